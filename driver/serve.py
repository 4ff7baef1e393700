"""`flowpo serve`: a trained generator behind an OpenAI-compatible endpoint, on Ray Serve.

``POST /v1/chat/completions``: the last user message is the question; the generator writes a
workflow (``flowpo.samples`` of them, picked by driver/vote.py's rules), the workflow runs through the
same executors, sandboxes and broker as training (the round's flow, driver/flow.py, ending at
execute), and its answer is the message content. The workflow, its failure class, its executor-LLM
calls, tokens and cost come back in the extra field ``flowpo``. ``GET /v1/models`` lists the served
model. Ray Serve's HTTP proxy binds ``--host`` (127.0.0.1 by default) and hands each request to the
ingress deployment (``FlowPODeployment``), which holds the run's actors (driver/session.py started
them, as for training: generator replicas and executors scale with the config).

What a client cannot do: send more than ``max_body_bytes``, hold more than ``max_concurrency``
requests running and ``max_queue`` waiting (then 429), or get past the optional API key (401; only
its SHA-256 reaches the deployment). A request that is not a chat completion gets a 4xx that says
why. A workflow that fails is an answer (content "", ``flowpo.failure`` its class); only the engine
itself failing is a 503, and nothing returns a traceback. The executor LLM's key never leaves the
brokers: workflows run in sandboxes with no environment of the host's.
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import os
import socket
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

from driver.solve import Question
from flowpo.errors import FlowPOError

log = logging.getLogger(__name__)
ROLES = ("system", "developer", "user", "assistant", "tool", "function")
EXTRA = "flowpo"  # the request's and the answer's own field


@dataclass(frozen=True)
class ServeSettings:
    model_name: str  # what clients put in "model", and GET /v1/models lists
    key_sha256: str = ""  # SHA-256 of the API key clients must send as a bearer token; "": no key
    max_body_bytes: int = 65_536
    max_concurrency: int = 8  # requests whose workflows run at once
    max_queue: int = 32  # requests waiting for a slot; beyond them: 429
    samples: int = 1  # workflows per question unless the request asks for more
    max_samples: int = 8  # the most a request may ask for (flowpo.samples)


def key_digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest() if key else ""


class Refused(Exception):
    """A request answered with an HTTP error: status, message, OpenAI error type and code."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error", code: str = "",
                 headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.kind, self.code, self.headers = status, message, kind, code, headers or {}

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.kind, "param": None, "code": self.code or None}}


def text_of(content, where: str) -> str:
    """A message's text: a string, or a list of text parts (OpenAI's content parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for j, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise Refused(400, f"{where}.content[{j}]: only text parts are understood here "
                                   "({\"type\": \"text\", \"text\": \"...\"})")
            parts.append(part["text"])
        return "\n".join(parts)
    raise Refused(400, f"{where}.content must be a string or a list of text parts")


def parse_request(body: bytes, settings: ServeSettings) -> tuple[Question, int]:
    """The question and its number of workflows, from a chat completion request; Refused (4xx) when
    the body is not one this server can answer."""
    try:
        request = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Refused(400, f"the request body is not valid JSON ({getattr(exc, 'msg', exc)})") from None
    if not isinstance(request, dict):
        raise Refused(400, "the request body must be a JSON object (a chat completion request)")
    model = request.get("model")
    if not isinstance(model, str) or not model:
        raise Refused(400, "you must give \"model\": the served model is " + repr(settings.model_name))
    if model != settings.model_name:
        raise Refused(404, f"the model {model!r} is not served here; GET /v1/models lists {settings.model_name!r}",
                      code="model_not_found")
    messages = request.get("messages")
    if not isinstance(messages, list) or not messages:
        raise Refused(400, "\"messages\" must be a non-empty list of {\"role\": ..., \"content\": ...}")
    question = None
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise Refused(400, f"messages[{i}] must be an object whose role is one of {', '.join(ROLES)}")
        if message["role"] == "user":
            question = text_of(message.get("content"), f"messages[{i}]")
    if question is None or not question.strip():
        raise Refused(400, "no user message with text: the last user message is the question")
    if request.get("stream"):
        raise Refused(400, "streaming is not supported: a workflow's answer comes whole (leave out \"stream\")")
    if request.get("n", 1) != 1:
        raise Refused(400, "n must be 1: for several workflows per question ask for "
                           f"\"{EXTRA}\": {{\"samples\": N}} (their answers are voted)")
    extra = request.get(EXTRA) or {}
    if not isinstance(extra, dict):
        raise Refused(400, f"\"{EXTRA}\" must be an object (samples, entry_point, tests)")
    unknown = sorted(set(extra) - {"samples", "entry_point", "tests"})
    if unknown:
        raise Refused(400, f"\"{EXTRA}\" has unknown fields {unknown}: it takes samples, entry_point and tests")
    samples = extra.get("samples", settings.samples)
    if not isinstance(samples, int) or isinstance(samples, bool) or not 1 <= samples <= settings.max_samples:
        raise Refused(400, f"{EXTRA}.samples must be an integer from 1 to {settings.max_samples}, got {samples!r}")
    tests = extra.get("tests", "")
    tests = "\n".join(map(str, tests)) if isinstance(tests, list) else tests
    entry = extra.get("entry_point", "")
    if not isinstance(tests, str) or not isinstance(entry, str):
        raise Refused(400, f"{EXTRA}.tests and {EXTRA}.entry_point must be text")
    seed = request.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise Refused(400, f"seed must be an integer, got {seed!r}")
    # A seed names the question after itself and its text, and so fixes its workflows and their
    # executor-LLM calls (flowpo.seeds); without one, every request is a question of its own.
    digest = hashlib.sha256(question.encode()).hexdigest()[:12]
    qid = f"seed-{seed}-{digest}" if seed is not None else f"req-{uuid.uuid4().hex[:16]}"
    return Question(qid, question, entry.strip(), tests), samples


def completion(answer: dict, lines: list[dict], model: str) -> dict:
    """The chat completion of an answer line (driver.solve.answer_line) and its workflows' lines."""
    usage = answer["usage"]
    extra = {k: answer[k] for k in ("workflow", "failure", "error", "rule", "chosen", "votes", "passed") if k in answer}
    extra.update(usage=usage, timings=answer["timings"])
    if len(lines) > 1:
        extra["samples"] = [{k: line.get(k) for k in ("sample_index", "workflow", "answer", "failure", "error",
                                                      "usage", "test")} for line in lines]
    return {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": answer["answer"]},
                         "finish_reason": "stop", "logprobs": None}],
            # The executor LLM's tokens: what the answer cost (the generator's are the server's own).
            "usage": {"prompt_tokens": usage["prompt_tokens"], "completion_tokens": usage["completion_tokens"],
                      "total_tokens": usage["prompt_tokens"] + usage["completion_tokens"]},
            EXTRA: extra}


class ChatEndpoint:
    """The HTTP contract, apart from Ray and sockets: ``respond`` maps (method, path, headers, body)
    to (status, JSON body, headers). ``answer(question, samples)`` -> (answer line, workflow lines)
    is blocking; it runs in a pool of ``max_concurrency`` threads."""

    def __init__(self, settings: ServeSettings, answer: Callable[[Question, int], tuple[dict, list[dict]]]):
        self.settings, self.answer = settings, answer
        self.pool = ThreadPoolExecutor(settings.max_concurrency, thread_name_prefix="flowpo-answer")
        self.slots = asyncio.Semaphore(settings.max_concurrency)
        self.waiting = 0
        self.counts = {"answered": 0, "refused": 0, "busy": 0, "failed": 0}

    def authorized(self, headers: dict) -> bool:
        if not self.settings.key_sha256:
            return True
        scheme, _, token = headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(key_digest(token.strip()), self.settings.key_sha256)

    async def respond(self, method: str, path: str, headers: dict, body: bytes) -> tuple[int, dict, dict]:
        try:
            return 200, await self._route(method, path.rstrip("/") or "/", headers, body), {}
        except Refused as refused:
            self.counts["busy" if refused.status == 429 else "refused"] += 1
            return refused.status, refused.body(), refused.headers
        except FlowPOError as exc:  # the engine itself (an actor gone for good), never a workflow
            self.counts["failed"] += 1
            log.error("flowpo serve: the engine failed: %s", exc)
            return 503, Refused(503, f"the workflow engine failed: {exc}", "server_error").body(), {}
        except Exception as exc:  # noqa: BLE001 - a JSON error for the client, the traceback for the log
            self.counts["failed"] += 1
            log.exception("flowpo serve: internal error")
            return 500, Refused(500, f"internal error ({type(exc).__name__}); see the server's log",
                                "server_error").body(), {}

    async def _route(self, method: str, path: str, headers: dict, body: bytes) -> dict:
        routes = {"/v1/models": "GET", "/v1/chat/completions": "POST"}
        if path not in routes:
            raise Refused(404, f"no route {path}: this server answers POST /v1/chat/completions and GET /v1/models",
                          code="unknown_url")
        if method != routes[path]:
            raise Refused(405, f"{path} takes {routes[path]}, not {method}", headers={"Allow": routes[path]})
        if not self.authorized(headers):
            raise Refused(401, "missing or wrong API key: send it as \"Authorization: Bearer KEY\"",
                          "authentication_error", "invalid_api_key", {"WWW-Authenticate": "Bearer"})
        if path == "/v1/models":
            return {"object": "list", "data": [{"id": self.settings.model_name, "object": "model", "created": 0,
                                                "owned_by": "flowpo"}]}
        if headers.get("content-type", "application/json").split(";")[0].strip() != "application/json":
            raise Refused(415, "the body must be JSON (Content-Type: application/json)")
        question, samples = parse_request(body, self.settings)
        return await self._answer(question, samples)

    async def _answer(self, question: Question, samples: int) -> dict:
        if self.slots.locked() and self.waiting >= self.settings.max_queue:
            raise Refused(429, f"busy: {self.settings.max_concurrency} requests running and {self.waiting} waiting; "
                               "retry later", "rate_limit_error", "server_busy", {"Retry-After": "1"})
        self.waiting += 1
        try:
            await self.slots.acquire()
        finally:
            self.waiting -= 1
        try:
            loop = asyncio.get_running_loop()
            answer, lines = await loop.run_in_executor(self.pool, self.answer, question, samples)
        finally:
            self.slots.release()
        self.counts["answered"] += 1
        return completion(answer, lines, self.settings.model_name)


def check_tests(question: Question, family: str, task_family: str) -> None:
    """A request's tests must be code tests this server can run (its evaluators have sandboxes for a
    code task only), and valid Python naming a function: else a 400, never a failed run."""
    from driver.solve import problem_of
    from flowpo.scoring import check_hidden_test

    if family != "code" or task_family != "code":
        raise Refused(400, f"{EXTRA}.tests are for code questions; this server answers {family} questions")
    try:
        check_hidden_test(problem_of(question, family, ""))
    except FlowPOError as exc:
        raise Refused(400, f"{EXTRA}.tests: {exc}") from None


async def read_body(request, limit: int) -> bytes:
    """The request's body, refused (413) past ``limit`` bytes, whether or not it says its length."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise Refused(413, f"the request body is {declared} bytes; this server takes at most {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Refused(413, f"the request body is over {limit} bytes, the most this server takes")
        chunks.append(chunk)
    return b"".join(chunks)


class FlowPODeployment:
    """The ingress: Ray Serve wraps it (``serve.deployment``, in ``serve``) and hands it each HTTP
    request. It holds the actors' handles and the checkpoint's adapter, never a key."""

    def __init__(self, settings: ServeSettings, actors, config, adapters: dict, lane: str, family: str,
                 description: str):
        from driver.solve import answer_one

        def answer(question: Question, samples: int):
            if question.tests:
                check_tests(question, family, config.task.resolved_family)
            return answer_one(actors, config, adapters, lane, question, samples=samples, family=family,
                              description=description)

        self.settings = settings
        self.endpoint = ChatEndpoint(settings, answer)

    async def __call__(self, request):
        from starlette.responses import JSONResponse

        try:
            body = await read_body(request, self.settings.max_body_bytes)
        except Refused as refused:
            return JSONResponse(refused.body(), status_code=refused.status)
        status, payload, headers = await self.endpoint.respond(request.method, request.url.path,
                                                               {k.lower(): v for k, v in request.headers.items()}, body)
        return JSONResponse(payload, status_code=status, headers=headers)


def check_port(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise FlowPOError(f"--host {host} --port {port}: cannot listen there ({exc.strerror}); pick another "
                              "port") from None


def serve(trained, settings: ServeSettings, *, host: str = "127.0.0.1", port: int = 8000, family: str = "",
          description: str | None = None, log_dir=None, key_env: str = "",
          until: Callable[[], bool] | None = None) -> None:
    """Everything `flowpo serve` does: start the run's actors, put the ingress behind Ray Serve's proxy
    on host:port, and serve until interrupted (SIGINT, SIGTERM) or ``until()`` says so; then stop all.
    ``key_env``: the variable that held the clients' key, withheld from the job's workers as the
    executor LLM's key is."""
    import signal
    from pathlib import Path

    from ray import serve as ray_serve

    from actors.launch import Actors, withhold_from_workers
    from driver.session import prepare, session
    from driver.solve import ship, solve_config

    config = solve_config(trained.config)
    family = family or config.task.resolved_family
    description = config.task.description if description is None else description
    check_port(host, port)
    if key_env:
        withhold_from_workers([key_env])
    model_path = prepare(config)
    home = Path(log_dir) if log_dir else (trained.home / "serve" if trained.home else Path("flowpo-serve"))

    def stop(signum, frame):
        raise KeyboardInterrupt

    # Both stop it, installed explicitly: a process started in the background by a shell script
    # inherits SIGINT ignored (and Python then installs no KeyboardInterrupt for it), so a server
    # started by `cmd &` would shrug off the Ctrl-C or `kill -INT` its user expects to stop it.
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with session(config, home, model_path) as actors:
            ray_serve.start(http_options={"host": host, "port": port}, proxy_location="HeadOnly")
            try:
                deployment = ray_serve.deployment(
                    FlowPODeployment, name="flowpo", num_replicas=1,
                    max_ongoing_requests=settings.max_concurrency + settings.max_queue + 16,
                    ray_actor_options={"num_cpus": 0})
                handles = Actors(actors.generators, actors.executors, actors.evaluators, None)
                lane = trained.checkpoint.name
                ray_serve.run(deployment.bind(settings, handles, config, {lane: ship(trained.checkpoint)}, lane,
                                              family, description), name="flowpo", route_prefix="/")
                print(f"serving {trained.label} as model {settings.model_name!r} at http://{host}:{port}/v1 "
                      f"(family {family}; {settings.samples} workflow(s) per question; "
                      f"{'API key required' if settings.key_sha256 else 'no API key'}); Ctrl-C stops it", flush=True)
                while until is None or not until():
                    time.sleep(0.5)
            finally:
                ray_serve.shutdown()
    except KeyboardInterrupt:
        print("flowpo serve: stopped", flush=True)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def api_key_from(env_name: str) -> str:
    """The key clients must send, from an environment variable (never the command line, which ``ps`` shows)."""
    if not env_name:
        return ""
    key = os.environ.get(env_name, "")
    if not key:
        raise FlowPOError(f"--api-key-env {env_name}: the environment variable is not set")
    return key
