"""In-sandbox supervisor: a warm parent that runs one job at a time in a fresh child process.

It is the sandbox's PID 1 (Docker, or bubblewrap with ``--as-pid-1``), so the kernel drops any
signal a workflow sends it, and it is not dumpable, so a workflow cannot ptrace it or open its
``/proc`` files. It never runs workflow code itself: each job runs in a ``fork`` of this clean parent,
with the runtime already imported, that has its own session, scratch directory, rlimits and pipes.
After each job every other process in the sandbox is killed and reaped and every writable place is
restored, so nothing a workflow leaves behind reaches the next one.

The job's path is kept short: the child for the next job is forked and set up while the sandbox
waits (a spare), and the job's ``end`` goes to the host as soon as its verdict is known; the kill,
the restore and the next fork follow, and ``restored`` tells the host the sandbox may take a job.

Host ↔ supervisor protocol, one JSON object per line on the supervisor's stdio, or on the unix socket
named by FLOWPO_HOST_SOCKET (Docker: see sandbox/supervised.py), which it connects to first:

  host → sandbox  {"type": "job", "job": n, "kind": "workflow" | "program" | "candidate" | "harness",
                   "limits": {...}, "start": {...} | "source": "..." (program)}
                  {"type": "llm_response" | "llm_error", "job": n, "id": m, ...}  (to a workflow)
                  {"type": "call", "job": n, "id": m, ...}                      (to a candidate)
                  {"type": "reply", "job": n, "id": m, ...}                     (to a harness)
                  {"type": "kill", "job": n, "status": ..., "error": ...}        (host's verdict)
  sandbox → host  {"type": "ready", "pid1": bool}
                  {"type": "llm_request", "job": n, "id": m, "messages": [...]}  (from a workflow)
                  {"type": "call" | "reply", "job": n, "id": m, ...}            (harness | candidate)
                  {"type": "end", "job": n, "status": ..., "answer": ..., "error": ..., "output": ...,
                   "output_bytes": ..., "seconds": ...}
                  {"type": "restored", "job": n, "clean": bool, "stray_processes": ..., "exit": ...}

Only this process writes the host's stdout; the child's own protocol lines are parsed and checked
here (each job kind may send only its own message types, with fields of the right types), so a
job cannot forge a message for the host. The host does not trust these lines either: it decides
infrastructure failures from what it saw itself (``sandbox/pool.py``).
"""
import asyncio
import ctypes
import fcntl
import gc
import json
import os
import resource
import selectors
import signal
import socket
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # -I leaves the script's folder out
import flowpo_runtime  # noqa: E402  (imported once here, so every forked job starts warm)
import flowpo_tests  # noqa: E402
from flowpo_clean import LIBC, Cleaner, remove  # noqa: E402  (LIBC: loaded once, before any fork)

SCRATCH_ROOT = os.environ.get("FLOWPO_SCRATCH", "/tmp")
# The result statuses each job kind may report of itself. A candidate reports only that it did not
# load; a harness only its verdict (as its answer); limits are decided here, on this process's clock.
CHILD_STATUSES = {"workflow": {"ok", "crash", "invalid_workflow", "timeout", "memory", "llm_error"},
                  "candidate": {"crash"}, "harness": {"ok"}, "program": set()}
DRAIN_CAP = 1 << 22  # bytes taken from a finished child's pipes: a flood from its leftovers must end
CHILD_BACKLOG_CAP = 64 << 20  # bytes of replies a job may leave unread (its own calls' answers) before it is a crash
# What each job kind may send up (child → host) and receive (host → child), with the fields checked.
UP = {"workflow": {"llm_request"}, "harness": {"call"}, "candidate": {"reply"}, "program": set()}
DOWN = {"workflow": {"llm_response", "llm_error"}, "harness": {"reply"}, "candidate": {"call"}, "program": set()}
ROLES = {"system", "user", "assistant"}
OOM_COUNTER = "/sys/fs/cgroup/memory/memory.oom_control"  # cgroup v1; v2 below
OOM_EVENTS_V2 = "/sys/fs/cgroup/memory.events"
MAX_PROTOCOL_LINE = 8 << 20


def set_dumpable(flag):
    """Not dumpable: no ptrace and no reading or writing its /proc files, even by the same uid."""
    pr_set_dumpable = 4
    if LIBC.prctl(pr_set_dumpable, int(flag), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), f"prctl(PR_SET_DUMPABLE, {int(flag)}) failed")


def oom_kills():
    """The sandbox cgroup's OOM-kill count (None when the cgroup is not visible)."""
    for path, key in ((OOM_COUNTER, "oom_kill"), (OOM_EVENTS_V2, "oom_kill")):
        try:
            with open(path) as f:
                for line in f:
                    name, _, value = line.partition(" ")
                    if name == key:
                        return int(value)
        except OSError:
            continue
    return None


# ---------------------------------------------------------------------------------------------
# The child: limits, then the job


def apply_limits(limits):
    def cap(kind, value, hard=None):
        if value:
            resource.setrlimit(kind, (value, hard or value))

    cap(resource.RLIMIT_CPU, int(limits["cpu_s"]), int(limits["cpu_s"]) + 1)
    cap(resource.RLIMIT_AS, int(limits["memory_mb"]) << 20)
    cap(resource.RLIMIT_NOFILE, int(limits["open_files"]))
    cap(resource.RLIMIT_FSIZE, int(limits["file_size_mb"]) << 20)
    cap(resource.RLIMIT_NPROC, int(limits["processes"]))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


JOB_FD = 4  # the spare child's own pipe, on which its one job arrives whole
SPARE_READY = b"R"  # a spare's first byte on the protocol pipe: set up, before any job reached it


def place_fds(sources):
    """Put ``sources`` at fds 0, 1, 2, ... in order and close every other fd. Each is first copied
    above them all, so that no dup2 overwrites a source not yet placed."""
    high = [fcntl.fcntl(fd, fcntl.F_DUPFD, len(sources)) for fd in sources]
    for target, fd in enumerate(high):
        os.dup2(fd, target)
    os.closerange(len(high), 1 << 16)


def read_to_end(fd):
    chunks = []
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


def child_main(scratch, fds):
    """The next job's process, forked while the sandbox waits for that job (Supervisor.fork_spare):
    it sets itself up, blocks until the job arrives whole on JOB_FD, runs it and exits; never returns."""
    code = 1
    try:
        os.setsid()  # its own session and process group: killed as one on timeout
        command_r, output_w, protocol_w, job_r = fds
        place_fds([command_r, output_w, output_w, protocol_w, job_r])
        os.chdir(scratch)
        os.environ.update({"HOME": scratch, "TMPDIR": scratch})  # the rest is the parent's: PATH only
        set_dumpable(True)  # the job's own /proc files; it holds nothing of the supervisor's
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write("1000")  # under memory pressure the kernel kills the job, not the supervisor
        signal.signal(signal.SIGINT, signal.default_int_handler)
        loop = asyncio.new_event_loop()  # for a workflow; made before its job is waited for
        os.write(3, SPARE_READY)
        job = json.loads(read_to_end(JOB_FD))
        os.close(JOB_FD)
        apply_limits(job["limits"])
        code = run_job(job, loop)
    except BaseException:  # noqa: BLE001 - the child must end in os._exit whatever happens
        try:
            traceback.print_exc()
        except BaseException:  # noqa: BLE001 - stderr may be gone; the exit code still tells
            code = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def run_job(job, loop):
    """Run ``job`` in this child; its exit status."""
    if job["kind"] == "workflow":
        flowpo_runtime.serve_child(job["start"], protocol_fd=3, loop=loop)
        return 0
    loop.close()
    if job["kind"] == "candidate":
        flowpo_tests.serve_candidate(job["start"], protocol_fd=3)
        return 0
    if job["kind"] == "harness":
        flowpo_tests.run_harness(job["start"], protocol_fd=3)
        return 0
    return run_program(job["source"])


def run_program(source):
    """A standalone program as ``__main__``; its exit status is the verdict."""
    try:
        exec(compile(source, "<program>", "exec"), {"__name__": "__main__"})  # noqa: S102 - sandboxed
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or 0
        print(exc.code, file=sys.stderr)
        return 1
    except MemoryError:
        print("MemoryError", file=sys.stderr)
        return 137
    except BaseException:  # noqa: BLE001 - reported on stderr, exit status 1 like python itself
        traceback.print_exc()
        return 1
    return 0


# ---------------------------------------------------------------------------------------------
# The supervisor side of one job


class Job:
    def __init__(self, message, send):
        self.id = message["job"]
        self.message = message
        # every limit is the host's (sandbox/backend.py SandboxLimits); none is guessed here
        self.limits = message["limits"]
        self.send = send
        self.output = bytearray()
        self.output_bytes = 0
        self.protocol_buffer = bytearray()
        self.verdict = None  # (status, answer, error) once known
        self.began = time.monotonic()
        self.deadline = self.began + float(self.limits["timeout_s"])
        self.oom_before = oom_kills()

    def decide(self, status, answer="", error=""):
        if self.verdict is None:
            self.verdict = (status, answer, error)

    def add_output(self, chunk):
        cap = int(self.limits["output_bytes"])
        self.output_bytes += len(chunk)
        self.output += chunk
        del self.output[:-4000]  # keep the tail for the report
        if self.output_bytes > cap:
            self.decide("output_limit", error=f"stdout+stderr over {cap} bytes")

    def add_protocol(self, chunk):
        self.protocol_buffer += chunk
        while self.verdict is None:
            line, newline, rest = self.protocol_buffer.partition(b"\n")
            if not newline:
                if len(self.protocol_buffer) > MAX_PROTOCOL_LINE:
                    self.decide("output_limit", error=f"a protocol line over {MAX_PROTOCOL_LINE} bytes")
                return
            self.protocol_buffer = bytearray(rest)
            self.handle_line(bytes(line))

    def handle_line(self, line):
        try:
            message = json.loads(line)
            forward = self.checked(message)
        except Exception as exc:  # noqa: BLE001 - any line the job can write must not upset PID 1
            self.decide("crash",
                        error=f"the job wrote a malformed protocol line ({type(exc).__name__}): {line[:120]!r}")
            return
        if forward is None:
            self.decide(message["status"], str(message.get("answer", "")), str(message.get("error", "")))
        else:
            self.send(forward)

    def checked(self, message):
        """The message to forward to the host (None for the job's result); raises ValueError for
        anything this job kind may not send or any field of the wrong type."""
        kind = message.get("type") if isinstance(message, dict) else None
        if kind == "result" and isinstance(message.get("status"), str) and \
                message["status"] in CHILD_STATUSES.get(self.message["kind"], ()):
            if not all(isinstance(message.get(k, ""), str) for k in ("answer", "error")):
                raise ValueError("result fields must be strings")
            return None
        if kind not in UP.get(self.message["kind"], ()) or type(message.get("id")) is not int:
            raise ValueError(f"message type {str(kind)[:40]!r} is not allowed here")
        if kind == "llm_request":
            return {"type": kind, "job": self.id, "id": message["id"], "messages": checked_messages(message)}
        fields = {k: v for k, v in message.items() if k not in ("type", "job", "id")}
        if not all(isinstance(v, (str, bool)) for v in fields.values()):
            raise ValueError(f"{kind} fields must be strings or booleans")
        return {**fields, "type": kind, "job": self.id, "id": message["id"]}


class Spare:
    """A forked child waiting for its job, and the supervisor's ends of its pipes."""

    def __init__(self, pid, pidfd, command_w, output_r, protocol_r, job_w):
        self.pid, self.pidfd = pid, pidfd
        self.command_w, self.output_r, self.protocol_r, self.job_w = command_w, output_r, protocol_r, job_w

    def wait_ready(self):
        """Until it is set up. One that could not set itself up means no job can run here: this
        process ends, so the host sees a broken sandbox (an infrastructure failure), never a job's
        own crash."""
        if os.read(self.protocol_r, 1) != SPARE_READY:
            os.waitpid(self.pid, 0)
            raise SystemExit(f"supervisor: a job's process failed before its job: "
                             f"{os.read(self.output_r, 4000).decode(errors='replace')}")

    def close(self):
        for fd in (self.pidfd, self.command_w, self.output_r, self.protocol_r, self.job_w):
            os.close(fd)


def checked_messages(message):
    """An LLM request's chat messages, flat: role and content strings only."""
    messages = message.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ValueError("llm_request needs a non-empty list of messages")
    for item in messages:
        if not (isinstance(item, dict) and set(item) == {"role", "content"} and item["role"] in ROLES
                and isinstance(item["content"], str)):
            raise ValueError("each chat message must be {role: system|user|assistant, content: str}")
    return messages


class Supervisor:
    def __init__(self, host_in, host_out):
        self.host_in = host_in
        self.host_out = host_out
        self.is_pid1 = os.getpid() == 1
        self.cleaner = Cleaner(enabled=self.is_pid1)  # without its own namespaces the mounts are the host's
        self.selector = selectors.DefaultSelector()
        self.host_buffer = bytearray()
        self.job = None
        self.child = None
        self.to_child = None
        self.child_backlog = bytearray()  # replies the job's process has not read yet
        self.child_writable = False  # to_child is registered for EVENT_WRITE
        self.spare = None  # the next job's process, forked and waiting for it
        self.spares = 0

    def send(self, message):
        data = (json.dumps(message) + "\n").encode()
        while data:
            data = data[os.write(self.host_out, data):]

    def serve(self):
        self.spare = self.fork_spare()
        self.send({"type": "ready", "pid1": self.is_pid1})
        self.selector.register(self.host_in, selectors.EVENT_READ, "host")
        while True:
            timeout = None if self.job is None else max(0.0, self.job.deadline - time.monotonic())
            for key, _ in self.selector.select(timeout):
                if key.data == "host" and not self.read_host():
                    self.kill_job_processes()
                    return
                if self.job is not None and key.data == "to_child":
                    self.flush_child()
                elif self.job is not None and key.data != "host":
                    self.read_child(key)
            if self.job is not None:
                if time.monotonic() >= self.job.deadline:
                    self.job.decide("timeout", error=f"over {self.job.limits.get('timeout_s')} s of wall time")
                if self.job.verdict is not None or self.child is None:
                    self.finish_job()

    # -- host messages --------------------------------------------------------------------

    def read_host(self):
        chunk = os.read(self.host_in, 1 << 20)
        if not chunk:
            return False
        self.host_buffer += chunk
        while True:
            line, newline, rest = self.host_buffer.partition(b"\n")
            if not newline:
                return True
            self.host_buffer = bytearray(rest)
            self.handle_host(json.loads(line))

    def handle_host(self, message):
        kind = message.get("type")
        if kind == "job":
            self.start_job(message)
        elif self.job is None or message.get("job") != self.job.id:
            return  # a late reply to a job that already ended
        elif kind in DOWN.get(self.job.message["kind"], ()) and self.to_child is not None:
            self.child_backlog += (json.dumps(message) + "\n").encode()
            self.flush_child()
        elif kind == "kill":
            self.job.decide(message.get("status", "crash"), error=message.get("error", ""))

    def flush_child(self):
        """Write what the job's process has not read yet, as far as its pipe takes it, never blocking:
        a process that stops reading its replies must not stall the supervisor (its clock, the host's
        messages), only itself. A backlog beyond CHILD_BACKLOG_CAP ends the job as its own crash."""
        while self.child_backlog and self.to_child is not None:
            try:
                written = os.write(self.to_child, self.child_backlog)
            except BlockingIOError:
                break
            except OSError:  # the child is gone; its end is being handled
                self.close_to_child()
                return
            del self.child_backlog[:written]
        waiting = bool(self.child_backlog) and self.to_child is not None
        if waiting != self.child_writable:
            if waiting:
                self.selector.register(self.to_child, selectors.EVENT_WRITE, "to_child")
            else:
                self.selector.unregister(self.to_child)
            self.child_writable = waiting
        if len(self.child_backlog) > CHILD_BACKLOG_CAP and self.job.verdict is None:
            self.job.decide("crash", error=f"the workflow left over {CHILD_BACKLOG_CAP} bytes of replies to its "
                                           "own calls unread")

    # -- one job --------------------------------------------------------------------------

    def fork_spare(self):
        """Fork the next job's process now, while no job waits for it: the fork and the child's setup
        (pipes, session, scratch directory, event loop) are off the job's path. Forked after the last
        job's processes are gone and its writable places restored, so it starts from the clean parent."""
        self.spares += 1
        scratch = os.path.join(SCRATCH_ROOT, f"job-{self.spares}")
        os.makedirs(scratch, mode=0o700)
        pipes = {name: os.pipe() for name in ("command", "output", "protocol", "job")}
        # Frozen objects are never scanned by the child's garbage collector, so it does not copy the
        # pages they sit on (a fork shares them until written); this process unfreezes its own.
        gc.freeze()
        try:
            pid = os.fork()
            if pid == 0:  # child_main never returns
                child_main(scratch, (pipes["command"][0], pipes["output"][1], pipes["protocol"][1], pipes["job"][0]))
        finally:
            gc.unfreeze()
        for name, end in (("command", 0), ("output", 1), ("protocol", 1), ("job", 0)):
            os.close(pipes[name][end])
        return Spare(pid, os.pidfd_open(pid), pipes["command"][1], pipes["output"][0], pipes["protocol"][0],
                     pipes["job"][1])

    def take_spare(self):
        """The waiting child, or a new one where it died while it waited (it runs no job's code
        then, so nothing of a job is lost)."""
        spare, self.spare = self.spare, None
        if spare is not None and os.waitpid(spare.pid, os.WNOHANG) != (0, 0):
            spare.close()
            spare = None
        spare = spare or self.fork_spare()
        spare.wait_ready()
        return spare

    def start_job(self, message):
        job = Job(message, self.send)
        start = dict(message.get("start") or {})
        if message["kind"] == "workflow":
            start["timeout_s"] = job.limits["timeout_s"]
        spare = self.take_spare()
        try:
            data = json.dumps({**message, "start": start}).encode()
            while data:
                data = data[os.write(spare.job_w, data):]
        except OSError:  # it died as the job arrived: its exit is seen below, and told as its status
            pass
        os.close(spare.job_w)
        self.job, self.child, self.to_child = job, spare.pid, spare.command_w
        os.set_blocking(spare.command_w, False)
        self.child_backlog, self.child_writable = bytearray(), False
        os.set_blocking(spare.output_r, False)
        os.set_blocking(spare.protocol_r, False)
        self.selector.register(spare.output_r, selectors.EVENT_READ, "output")
        self.selector.register(spare.protocol_r, selectors.EVENT_READ, "protocol")
        self.child_exit = None
        self.selector.register(spare.pidfd, selectors.EVENT_READ, "exit")

    def read_child(self, key):
        if key.data == "exit":
            _, status = os.waitpid(self.child, 0)
            self.child_exit = status
            self.drain_child_pipes()
            self.unregister(key.fd)
            self.child = None
            return
        try:
            chunk = os.read(key.fd, 1 << 16)
        except BlockingIOError:
            return
        if not chunk:
            self.unregister(key.fd)
        elif key.data == "output":
            self.job.add_output(chunk)
        else:
            self.job.add_protocol(chunk)

    def drain_child_pipes(self):
        """Take what the child wrote just before it exited (the result line, mostly): what is
        there now, up to DRAIN_CAP bytes a pipe; processes it left behind may still be writing,
        and are killed next."""
        for key in list(self.selector.get_map().values()):
            if key.data in ("output", "protocol"):
                drained = 0
                while (self.job.verdict is None or key.data == "output") and drained < DRAIN_CAP:
                    try:
                        chunk = os.read(key.fd, 1 << 16)
                    except BlockingIOError:
                        break
                    if not chunk:
                        break
                    drained += len(chunk)
                    (self.job.add_output if key.data == "output" else self.job.add_protocol)(chunk)

    def unregister(self, fd):
        self.selector.unregister(fd)
        os.close(fd)

    def close_to_child(self):
        if self.to_child is not None:
            if self.child_writable:
                self.selector.unregister(self.to_child)
                self.child_writable = False
            os.close(self.to_child)
            self.to_child = None
        self.child_backlog = bytearray()

    def finish_job(self):
        """Send the job's end as soon as its verdict is known, then restore the sandbox (kill what
        the job left, empty every writable place, fork the next job's process) and say so with
        ``restored``: the host gives the sandbox its next job only after that line, so the restore
        costs no job any time unless every sandbox is busy."""
        job = self.job
        if job.verdict is None:  # no verdict yet: the child exited, and its exit status is the verdict
            job.decide(*self.verdict_from_exit(job))
        status, answer, error = job.verdict
        oom = job.oom_before is not None and (oom_kills() or 0) > job.oom_before
        if oom and status in ("crash", "timeout"):
            status, error = "memory", "killed by the sandbox's memory limit"
        for key in list(self.selector.get_map().values()):
            if key.data not in ("host", "to_child"):
                self.unregister(key.fd)
        self.close_to_child()
        self.send({"type": "end", "job": job.id, "status": status, "answer": answer, "error": error,
                   "output": job.output.decode(errors="replace"), "output_bytes": job.output_bytes,
                   "seconds": time.monotonic() - job.began})
        self.job = None
        stray = self.kill_job_processes()
        clean = wipe(SCRATCH_ROOT)
        clean = self.cleaner.clean() and clean
        self.spare = self.fork_spare()
        self.send({"type": "restored", "job": job.id, "clean": clean, "stray_processes": stray,
                   "exit": exit_description(self.child_exit)})

    def verdict_from_exit(self, job):
        status = self.child_exit
        if status is None:
            return "crash", "", "the job ended without an exit status"
        if os.WIFSIGNALED(status):
            sig = os.WTERMSIG(status)
            if sig == signal.SIGXCPU:
                return "timeout", "", f"over {job.limits.get('cpu_s')} s of CPU time"
            return "crash", "", f"killed by signal {signal.Signals(sig).name}"
        code = os.WEXITSTATUS(status)
        if job.message["kind"] == "program":
            return ("ok" if code == 0 else "crash"), "", "" if code == 0 else f"exit status {code}"
        return "crash", "", f"the workflow's process exited with status {code} without a result"

    def kill_job_processes(self):
        """Kill every process of the job, including ones that left its session; return the strays."""
        if self.child is not None:
            try:
                os.killpg(self.child, signal.SIGKILL)
            except ProcessLookupError:
                pass  # the group already exited
        stray = 0
        if self.is_pid1 and others_alive():
            # kill(-1) reaches every process this uid may signal except the caller: in our own
            # pid namespace that is exactly the job's processes, wherever they moved to.
            stray = len(other_processes({self.child}))
            for _ in range(1000):
                if not other_processes(set()):
                    break
                try:
                    os.kill(-1, signal.SIGKILL)
                except ProcessLookupError:
                    pass  # they all exited between listing and killing
                self.reap(block=True)
        if self.child is not None:
            self.child_exit = self.child_exit or self.wait_child()
            self.child = None
        self.reap(block=False)
        return stray

    def wait_child(self):
        try:
            return os.waitpid(self.child, 0)[1]
        except ChildProcessError:
            return None

    def reap(self, block):
        while True:
            try:
                pid, status = os.waitpid(-1, 0 if block else os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.child:
                self.child_exit, self.child = status, None
            block = False  # one blocking wait lets the kill land; then take the rest as they come


def others_alive():
    """Whether any process but this one is left in its pid namespace, zombies included: kill(-1, 0)
    fails with ESRCH only when there is none, which spares most jobs a walk of /proc."""
    try:
        os.kill(-1, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # one it may not signal: the walk finds it
    return True


def other_processes(exclude):
    """Pids in this pid namespace other than PID 1 and ``exclude``."""
    return [p for p in os.listdir("/proc") if p.isdigit() and int(p) != 1 and int(p) not in exclude]


def wipe(root):
    """Empty ``root``, even of directories a workflow made unreadable; True when it is empty."""
    for entry in os.listdir(root):
        path = os.path.join(root, entry)
        try:
            remove(path)
        except OSError as exc:
            print(f"supervisor: cannot remove {path}: {exc}", file=sys.stderr)
    return not os.listdir(root)


def exit_description(status):
    if status is None:
        return "killed"
    if os.WIFSIGNALED(status):
        return f"signal {signal.Signals(os.WTERMSIG(status)).name}"
    return f"status {os.WEXITSTATUS(status)}"


def host_channel():
    """(read fd, write fd) of the conversation with the host: its socket, or stdin and stdout."""
    path = os.environ.pop("FLOWPO_HOST_SOCKET", "")
    if not path:
        return os.dup(0), os.dup(1)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(path)
    fd = sock.detach()
    return fd, os.dup(fd)


def main():
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # as PID 1, default dispositions ignore signals
    set_dumpable(False)
    os.umask(0o077)
    host_in, host_out = host_channel()
    os.environ.clear()  # what every job's child inherits; it adds its own HOME and TMPDIR
    os.environ["PATH"] = "/usr/bin:/bin"
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1):
        os.dup2(null, fd)
    asyncio.new_event_loop().close()  # asyncio's lazy set-up happens once here, not in every child
    Supervisor(host_in, host_out).serve()


if __name__ == "__main__":
    main()
