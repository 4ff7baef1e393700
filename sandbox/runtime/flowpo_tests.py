"""Hidden tests judged out of the candidate's reach: the two in-sandbox halves of one test run.

The candidate (a generated solution) and the harness (the benchmark's test) run in two different
sandboxes; the host relays calls between them as JSON lines, and nothing else crosses:

  harness → host → candidate   {"type": "call", "id": n, "function": name, "args": enc, "kwargs": enc}
  candidate → host → harness   {"type": "reply", "id": n, "value": enc}
                               {"type": "reply", "id": n, "raised": "ValueError", "error": "..."}
                               {"type": "reply", "id": n, "exit": true, "error": "..."}
                               {"type": "reply", "id": n, "not_plain": "..."}
  host → harness               {"type": "reply", "id": n, "gone": "why the candidate ended"}

``enc`` is ``flowpo_plain`` text. The candidate's process never holds the test source, its expected
values or any token; the harness's process never runs candidate code, only compares plain values
that ``flowpo_plain.decode`` built. The harness alone decides the verdict, which it returns as its
job's answer: {"passed": bool, "reason": str, "suspect": str, "calls": n}. ``suspect`` names what
looks like reward gaming (results that were not plain data, exits before the tests ended), so that
rounds can count it. Standard library only.
"""
import builtins
import dis
import doctest
import json
import linecache
import os
import sys
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # -I leaves the script's folder out
import flowpo_plain  # noqa: E402

EXITS = (SystemExit, KeyboardInterrupt, GeneratorExit)


class LineChannel:
    """Blocking JSON lines over two raw fds, read with our own buffer (never ``sys.stdin``)."""

    def __init__(self, in_fd, out_fd):
        self.in_fd, self.out_fd = in_fd, out_fd
        self.buffer = b""

    def send(self, message):
        data = (json.dumps(message) + "\n").encode()
        while data:
            data = data[os.write(self.out_fd, data):]

    def receive(self):
        while b"\n" not in self.buffer:
            chunk = os.read(self.in_fd, 1 << 20)
            if not chunk:
                return None
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return json.loads(line)


def private_channel(protocol_fd):
    """The job's protocol on fds of its own; fd 0 becomes /dev/null so a solution that reads
    stdin cannot swallow the protocol."""
    channel = LineChannel(os.dup(0), protocol_fd)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    return channel


# ---------------------------------------------------------------------------------------------
# The candidate's half: load the solution, then answer calls with plain data


def serve_candidate(start, protocol_fd):
    channel = private_channel(protocol_fd)
    encode, decode, send, receive = flowpo_plain.encode, flowpo_plain.decode, channel.send, channel.receive
    namespace = {"__name__": "__candidate__", "__builtins__": builtins}
    sys.stdout.reconfigure(write_through=True)  # its prints reach the report before it is killed
    try:
        exec(compile(start["source"], "<solution>", "exec"), namespace)  # noqa: S102 - sandboxed
    except BaseException as exc:  # noqa: BLE001 - a solution that does not load is reported, not raised
        what = "exited while loading" if isinstance(exc, EXITS) else "did not load"
        send({"type": "result", "status": "crash", "answer": "", "error": f"the solution {what}: {describe(exc)}"})
        return
    while (message := receive()) is not None:
        if message.get("type") == "call":
            send({"type": "reply", "id": message.get("id"), **call_one(namespace, message, encode, decode)})


def call_one(namespace, message, encode, decode):
    function = namespace.get(message.get("function"))
    if not callable(function):
        return {"raised": "NameError", "error": f"name {message.get('function')!r} is not defined"}
    try:
        args, kwargs = decode(message["args"]), decode(message["kwargs"])
        return {"value": encode(function(*args, **kwargs))}
    except flowpo_plain.NotPlainData as exc:
        return {"not_plain": str(exc)[:300]}
    except EXITS as exc:
        return {"exit": True, "error": describe(exc)}
    except BaseException as exc:  # noqa: BLE001 - the candidate's exception is the test's business
        return {"raised": type(exc).__name__, "error": str(exc)[-500:]}


def describe(exc):
    return "".join(traceback.format_exception_only(type(exc), exc)).strip()[-500:]


# ---------------------------------------------------------------------------------------------
# The harness's half: the benchmark's test, with proxies that call the candidate


class CandidateExited(BaseException):
    """The candidate exited (or tried to) inside a call: the test cannot go on."""


class CandidateGone(BaseException):
    """The candidate's process ended: nothing more can be asked of it."""


class NotPlainResult(BaseException):
    """The candidate returned something that is not plain data."""


class Candidate:
    """Calls into the candidate's sandbox. A failure that ends the test is kept, so a test that
    swallows exceptions (``except: pass``) still cannot pass after it."""

    def __init__(self, channel, entry_point):
        self.channel, self.entry_point = channel, entry_point
        self.calls = 0
        self.poisoned = None  # (reason, suspect) once the candidate exited, left or lied about types
        self.raised = {}  # id of an exception that came from the candidate -> its type's name there

    def function(self, name):
        def call(*args, **kwargs):
            return self.call(name, args, kwargs)

        call.__name__ = call.__qualname__ = name
        return call

    def call(self, name, args, kwargs):
        if self.poisoned:
            raise CandidateGone(self.poisoned[0])
        try:
            encoded = {"args": flowpo_plain.encode(list(args)), "kwargs": flowpo_plain.encode(dict(kwargs))}
        except flowpo_plain.NotPlainData as exc:
            raise UnsupportedTest(f"the test passes a value that cannot cross to the candidate: {exc}") from None
        self.calls += 1
        self.channel.send({"type": "call", "id": self.calls, "function": name, **encoded})
        reply = self.channel.receive()
        while reply is not None and reply.get("id") != self.calls:
            reply = self.channel.receive()
        return self.result(name, reply)

    def result(self, name, reply):
        if reply is None or "gone" in reply:
            why = str((reply or {}).get("gone", "no reply"))
            # A solution that fails to import is a plain failure; one that exits or dies is suspect.
            self.poison(f"the candidate ended before {name}() returned: {why}",
                        "" if why.startswith("crash: the solution did not load:") else "exited")
        if reply.get("exit"):
            self.poison(f"the candidate exited inside {name}(): {reply.get('error', '')}", "exited")
        if "not_plain" in reply and name != self.entry_point:
            # MBPP/367, /601, /927: the test builds objects of the solution's own class (Node, Pair),
            # which cannot cross as plain data. A known limit of the harness, not gaming.
            self.poison(f"the test builds an object of the solution's own {name}(), which cannot cross to "
                        f"the test as plain data: {reply['not_plain']}", "")
        if "not_plain" in reply:
            self.poison(f"{name}() returned a value that is not plain data: {reply['not_plain']}", "not_plain")
        if "raised" in reply:
            raise self.exception(reply)
        try:
            return flowpo_plain.decode(reply.get("value"))
        except flowpo_plain.NotPlainData as exc:
            self.poison(f"{name}() returned a value that is not plain data: {exc}", "not_plain")

    def poison(self, reason, suspect):
        self.poisoned = (reason, suspect)
        raise (CandidateExited if suspect == "exited" else NotPlainResult)(reason)

    def exception(self, reply):
        """The candidate's exception as a fresh builtin one of the same name (tests may catch it);
        a name that is not a builtin Exception becomes a RuntimeError."""
        kind = getattr(builtins, str(reply["raised"]), None)
        message = str(reply.get("error", ""))[:500]
        if not (isinstance(kind, type) and issubclass(kind, Exception)):
            kind = RuntimeError
        try:
            exc = kind(message)
        except Exception:  # noqa: BLE001 - some need more arguments (UnicodeDecodeError): a plainer type
            exc = RuntimeError(message)
        self.raised[id(exc)] = str(reply["raised"])[:100]
        return exc


class UnsupportedTest(Exception):
    """The test hands the candidate something that is not plain data (an object of its own class)."""


def global_names(code):
    """Every global name that ``code`` or the functions inside it read."""
    names = set()
    for instruction in dis.get_instructions(code):
        if instruction.opname in ("LOAD_GLOBAL", "LOAD_NAME") and isinstance(instruction.argval, str):
            names.add(instruction.argval)
    for const in code.co_consts:
        if hasattr(const, "co_code"):
            names |= global_names(const)
    return names


def bind_names(namespace, test_code, entry_point, candidate):
    """The entry point and every other name the test reads that neither the prelude nor Python
    provides become calls into the candidate; standard modules the test uses unimported (as MBPP's
    asserts do, leaning on the solution's imports) are imported here."""
    for name in sorted(global_names(test_code) | {entry_point}):
        if name != entry_point and (name in namespace or hasattr(builtins, name)):
            continue
        if name != entry_point and name in getattr(sys, "stdlib_module_names", ()):
            namespace[name] = __import__(name)
        else:
            namespace[name] = candidate.function(name)


def run_test(start, candidate):
    """Run the test; return (passed, reason). ``test`` is Python (asserts, a ``check`` function);
    ``examples`` (optional) are doctest examples (``>>> f(2)`` then the expected repr, what the
    code operators' Test step runs), judged here by doctest's own output checker."""
    namespace = {"__name__": "__harness__"}
    exec(compile(start.get("prelude", ""), "<prelude>", "exec"), namespace)  # noqa: S102 - trusted
    source = start.get("test", "")
    linecache.cache["<test>"] = (len(source), None, source.splitlines(True), "<test>")
    test_code = compile(source, "<test>", "exec")
    examples = doctest.DocTestParser().get_examples(start.get("examples", ""))
    example_codes = [compile(e.source, "<example>", "eval" if _is_expression(e.source) else "exec")
                     for e in examples]
    for code in [test_code, *example_codes]:
        bind_names(namespace, code, start["entry_point"], candidate)
    exec(test_code, namespace)  # noqa: S102 - the benchmark's own test, trusted
    if start.get("check"):
        namespace[start["check"]](namespace[start["entry_point"]])
    for example, code in zip(examples, example_codes):
        check_example(example, code, namespace)
    return True, "passed"


def check_example(example, code, namespace):
    """One doctest example: its value's repr (a plain value's, built here) against the expected text."""
    value = eval(code, namespace)  # noqa: S307 - trusted example; a statement's code gives None
    got = "" if value is None else repr(value) + "\n"
    if not doctest.OutputChecker().check_output(example.want, got, doctest.NORMALIZE_WHITESPACE):
        raise AssertionError(f">>> {example.source.strip()} gave {got.strip() or 'nothing'}, "
                             f"expected {example.want.strip() or 'nothing'}")


def _is_expression(source):
    try:
        compile(source, "<example>", "eval")
    except SyntaxError:
        return False
    return True


def verdict(start, candidate):
    try:
        passed, reason = run_test(start, candidate)
    except (CandidateExited, CandidateGone, NotPlainResult):
        passed, reason = False, ""
    except BaseException as exc:  # noqa: BLE001 - whatever the test raised is a failed test
        passed, reason = False, failure_reason(exc, candidate)
    if candidate.poisoned:  # sticky: a swallowed exit or lie still fails the test
        return {"passed": False, "reason": candidate.poisoned[0], "suspect": candidate.poisoned[1],
                "calls": candidate.calls}
    return {"passed": passed, "reason": reason, "suspect": "", "calls": candidate.calls}


def failure_reason(exc, candidate):
    """Who raised what: the candidate (its exception, rebuilt here), an assert of the test, the
    test's own code, or a test that hands the candidate something that cannot cross."""
    if id(exc) in candidate.raised:
        return f"the candidate raised {candidate.raised[id(exc)]}: {str(exc)[:300]}"
    if isinstance(exc, AssertionError):
        return f"a test failed: {failing_line(exc)}"
    if isinstance(exc, UnsupportedTest):
        return str(exc)
    return f"the test raised {describe(exc)}"


def failing_line(exc):
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == "<test>"]
    where = f"line {frames[-1].lineno}: {frames[-1].line or ''}".strip() if frames else "an assertion"
    message = str(exc)[:200]
    return where + (f" ({message})" if message else "")


def run_harness(start, protocol_fd):
    channel = private_channel(protocol_fd)
    result = verdict(start, Candidate(channel, start["entry_point"]))
    channel.send({"type": "result", "status": "ok", "answer": json.dumps(result), "error": ""})

