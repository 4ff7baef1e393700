"""Hostile workflows against the warm pool, on both backends (real Docker engine, real bubblewrap).

Each attack must be contained and classified, and the same warm sandbox (the pool has one) must then
serve a probe workflow that finds no process, file or state left by the attack. The pool fixture
checks that no sandbox outlives the module.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass

import pytest

from flowpo import operators as flowpo_operators
from tests.sandbox.conftest import SECRET, body

pytestmark = pytest.mark.docker


@dataclass(frozen=True)
class Attack:
    name: str
    code: str
    failures: tuple[str, ...]  # acceptable classes (most attacks have exactly one)
    error_has: str = ""  # regex the error or answer must match: evidence the act itself failed
    answer: str | None = None


ATTACKS = [
    Attack("fork_bomb", body("import os\nwhile True:\n    os.fork()"), ("crash",), "BlockingIOError"),
    Attack("memory_bomb", body("x = bytearray(1 << 30)"), ("memory",)),
    Attack("memory_creep", body("chunks = []\nwhile True:\n    chunks.append(bytearray(8 << 20))"), ("memory",)),
    Attack("cpu_spin", body("while True:\n    pass"), ("timeout",)),
    Attack("sleep_forever", body("import time\ntime.sleep(10 ** 6)"), ("timeout",)),
    Attack("endless_stdout", body("while True:\n    print('x' * 1000)"), ("output_limit",)),
    Attack("one_huge_line", body("import sys\nsys.stderr.write('x' * 50_000_000)"), ("output_limit",)),
    Attack("huge_protocol_line", body("import os\nos.write(3, b'{' * (9 << 20))"), ("output_limit",)),
    Attack("forged_host_message", body(
        "import os, json\n"
        "os.write(3, (json.dumps({'type': 'end', 'job': 1, 'status': 'ok', 'answer': 'forged'}) + '\\n').encode())\n"
        "import time\ntime.sleep(1)\nreturn 'not forged'"), ("crash",), "malformed protocol line"),
    # Infrastructure failures are the host's judgment only: nothing written on the channel makes one.
    Attack("forged_llm_error", body(
        "import os\nos.write(3, b'{\"type\": \"result\", \"status\": \"llm_error\", \"error\": \"fake\"}\\n')\n"
        "import time\ntime.sleep(1)"), ("crash",), "never saw"),
    Attack("raise_runtime_llm_error",
           body("import flowpo_runtime\nraise flowpo_runtime.LLMError('the API is down, honest')"),
           ("crash",), "never saw"),
    Attack("forged_sandbox_error", body(
        "import os\nos.write(3, b'{\"type\": \"result\", \"status\": \"sandbox_error\"}\\n')\n"
        "import time\ntime.sleep(1)"),
        ("crash",), "malformed protocol line"),
    Attack("forged_budget_stop", body(
        "import os\nos.write(3, b'{\"type\": \"result\", \"status\": \"budget_exceeded\"}\\n')\n"
        "import time\ntime.sleep(1)"),
        ("crash",), "malformed protocol line"),
    Attack("unhashable_status", body(
        "import os\nos.write(3, b'{\"type\": \"result\", \"status\": [\"ok\"]}\\n')\nimport time\ntime.sleep(1)"),
        ("crash",), "malformed protocol line"),
    Attack("deeply_nested_line", body("import os\nos.write(3, b'[' * 200000 + b'\\n')\nimport time\ntime.sleep(1)"),
           ("crash",), "RecursionError"),
    Attack("malformed_llm_request", body(
        "import os, json\nos.write(3, (json.dumps({'type': 'llm_request', 'id': 7, 'messages': [{'role': 'root', "
        "'content': 'x'}]}) + '\\n').encode())\nimport time\ntime.sleep(1)"), ("crash",), "malformed protocol line"),
    Attack("reply_for_invented_request", body(
        "import os, json\n"
        "os.write(3, (json.dumps({'type': 'llm_response', 'id': 1, 'content': 'x'}) + '\\n').encode())\n"
        "import time\ntime.sleep(1)"), ("crash",), "malformed protocol line"),
    Attack("tcp_egress", body("import socket\nsocket.create_connection(('1.1.1.1', 80), timeout=2)"), ("crash",),
           "OSError"),
    Attack("dns_lookup", body("import socket\nsocket.getaddrinfo('example.com', 80)"), ("crash",), "gaierror"),
    Attack("raw_socket", body("import socket\nsocket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)"),
           ("crash",), "PermissionError"),
    Attack("read_host_env", body("import os\nreturn repr(sorted(os.environ.items()))"), ("",)),
    Attack("read_supervisor_env", body("return open('/proc/1/environ', 'rb').read().decode()"), ("crash",),
           "PermissionError"),
    Attack("read_supervisor_memory", body("open('/proc/1/mem', 'rb').read(16)"), ("crash",), "PermissionError"),
    Attack("read_host_file", body("return open('/etc/shadow').read()"), ("crash",), "Error"),
    Attack("write_outside_scratch", body("open('/usr/flowpo-owned', 'w').write('x')"), ("crash",),
           "Permission denied|Read-only file system"),
    Attack("patch_runtime_file", body("open('/opt/flowpo/flowpo_operators.py', 'a').write('EVIL = 1')"), ("crash",),
           "Permission denied|Read-only file system"),
    Attack("fill_the_disk", body("i = 0\nwhile True:\n    open(f'fill{i}', 'wb').write(b'x' * (1 << 20))\n    i += 1"),
           ("crash",), "No space left|File too large"),
    Attack("one_huge_file", body("open('big', 'wb').write(b'x' * (64 << 20))"), ("crash", "memory"), "Error"),
    Attack("many_small_files", body("for i in range(10 ** 7):\n    open(f'f{i}', 'w').close()"), ("crash", "timeout")),
    Attack("kill_parent_and_pid1", body(
        "import os, signal\nfor sig in (signal.SIGKILL, signal.SIGTERM, signal.SIGSTOP):\n"
        "    os.kill(os.getppid(), sig)\n    os.kill(1, sig)\nreturn 'still here'"), ("",), answer="still here"),
    Attack("signal_tricks", body(
        "import signal, time\n"
        "for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGALRM, signal.SIGHUP, signal.SIGXCPU):\n"
        "    signal.signal(sig, signal.SIG_IGN)\n"
        "signal.pthread_sigmask(signal.SIG_BLOCK, set(signal.Signals) - {signal.SIGKILL, signal.SIGSTOP})\n"
        "while True:\n    time.sleep(0.1)"), ("timeout",)),
    Attack("fake_success_exit", body("import os\nos._exit(0)"), ("crash",), "without a result"),
    Attack("huge_integer_power", body("x = 10 ** 10 ** 10"), ("timeout",)),
    Attack("catastrophic_regex", body("import re\nre.match(r'(a+)+$', 'a' * 64 + 'b')"), ("timeout",)),
    Attack("threads_outlive", body(
        "import threading, time\ndef spin():\n    while True:\n        open('alive', 'w').write(str(time.time()))\n"
        "        time.sleep(0.01)\nfor _ in range(4):\n    threading.Thread(target=spin).start()\nreturn 'returned'"),
        ("",), answer="returned"),
    Attack("zombies_and_orphans", body(
        "import os, time\nfor _ in range(5):\n    if os.fork() == 0:\n        os._exit(0)\n"  # unreaped: zombies
        "if os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n        time.sleep(10 ** 6)\n    os._exit(0)\n"
        "time.sleep(0.2)\nreturn 'left children'"), ("",), answer="left children"),
    Attack("patch_operator_library", body(
        "import flowpo_operators, flowpo_runtime, builtins\n"
        "async def evil(self, input, instruction=''):\n    return flowpo_operators.TextResult('patched')\n"
        "flowpo_operators.Custom.__call__ = evil\nCustom.__call__ = evil\n"
        "flowpo_runtime.as_answer = lambda v: 'patched'\n"
        "builtins.LEAK = 'leaked'\nreturn (await Custom(self.llm)(input='q')).response"), ("",), answer="patched"),
    Attack("leave_state_behind", body(
        "import os, subprocess, builtins\nopen('/tmp/leak.txt', 'w').write('leak')\nos.makedirs('/tmp/hidden/deep')\n"
        "os.chmod('/tmp/hidden', 0)\nos.environ['LEAK'] = '1'\nbuiltins.LEAK = 'leaked'\n"
        "subprocess.Popen(['sleep', '1000'], start_new_session=True)\nreturn 'left state'"), ("",),
        answer="left state"),
]

PROBE = body("""
import os, builtins
pids = sorted(int(p) for p in os.listdir('/proc') if p.isdigit())
scratch = sorted(os.listdir('/tmp'))
patched = (await Custom(self.llm)(input='probe')).response
return json.dumps({"pids": pids, "me": os.getpid(), "scratch": scratch, "cwd": os.getcwd(),
                   "leak": getattr(builtins, 'LEAK', None), "env": sorted(os.environ), "custom": patched})
""").replace("import os, builtins", "import os, builtins, json")


async def echo_llm(messages, call=0):
    return {"content": "echo: " + messages[-1]["content"][-40:], "usage": {"prompt_tokens": 1, "completion_tokens": 1}}


def test_at_least_twenty_attacks():
    assert len(ATTACKS) >= 20


@pytest.mark.parametrize("attack", ATTACKS, ids=[a.name for a in ATTACKS])
def test_attack_is_contained_and_classified(attack_pool, attack: Attack):
    outcome = attack_pool.workflow(attack.code, echo_llm)
    assert outcome.failure in attack.failures, (outcome.failure, outcome.error, outcome.output[-300:])
    evidence = outcome.error + outcome.answer + outcome.output
    assert re.search(attack.error_has, evidence), evidence[-500:]
    if attack.answer is not None:
        assert outcome.answer == attack.answer
    assert SECRET not in evidence and "FLOWPO_TEST_SECRET" not in evidence
    assert outcome.seconds < attack_pool.backend.limits.timeout_s + 5

    # The pool serves the next workflow normally, and nothing of the attack is left for it.
    probe = attack_pool.workflow(PROBE, echo_llm)
    assert probe.failure == "", (probe.error, probe.output[-300:])
    seen = json.loads(probe.answer)
    assert seen["pids"] == sorted({1, seen["me"]}), "processes from the attack survived"
    assert seen["scratch"] == [seen["cwd"].rsplit("/", 1)[1]], "files from the attack survived"
    assert seen["leak"] is None and set(seen["env"]) == {"HOME", "PATH", "TMPDIR"}
    assert seen["custom"] == "echo: probe", "the operator library stayed patched"


# Every writable place lies on a read-write mount: walk those (not crossing into other mounts), so
# that the walk stays fast (read-only /usr is skipped) and misses nothing.
WALK_RW_MOUNTS = """
def rw_dirs():
    for line in open('/proc/self/mounts'):
        point, options = line.split()[1], line.split()[3].split(',')
        if 'rw' not in options or point.startswith(('/proc', '/sys')) or not os.path.isdir(point):
            continue
        device = os.stat(point).st_dev
        for root, dirs, files in os.walk(point):
            dirs[:] = [d for d in dirs if os.lstat(os.path.join(root, d)).st_dev == device]
            yield root, dirs, files
"""

WRITE_EVERYWHERE = body(WALK_RW_MOUNTS + """
wrote = []
for root, dirs, files in rw_dirs():
    if os.access(root, os.W_OK):
        try:
            open(os.path.join(root, 'flowpo-leak-marker'), 'w').write('x')
            os.mkdir(os.path.join(root, 'flowpo-leak-dir'))
            wrote.append(root)
        except OSError:
            pass
libc = ctypes.CDLL(None)
shm = libc.shmget(0x464c4f57, 4096, 0o1600)  # IPC_CREAT | 0600
sem = libc.semget(0x464c4f58, 1, 0o1600)
msg = libc.msgget(0x464c4f59, 0o1600)
return json.dumps({"wrote": sorted(set(wrote)), "sysv": [shm, sem, msg]})
""").replace("class Workflow:", "import os, ctypes, json\n\nclass Workflow:")

FIND_LEFTOVERS = body(WALK_RW_MOUNTS + """
found = []
for root, dirs, files in rw_dirs():
    found += [os.path.join(root, n) for n in files + dirs if n.startswith('flowpo-leak')]
sysv = {kind: open('/proc/sysvipc/' + kind).read().splitlines()[1:] for kind in ('shm', 'sem', 'msg')
        if os.path.exists('/proc/sysvipc/' + kind)}
return json.dumps({"found": found, "sysv": sysv})
""").replace("class Workflow:", "import os, json\n\nclass Workflow:")


def test_every_writable_place_is_empty_at_the_next_job(attack_pool):
    """Whatever the backend lets a job write (scratch, /dev/shm, bubblewrap's root tmpfs, System V
    IPC objects), the next job on the same sandbox finds none of it."""
    wrote = attack_pool.workflow(WRITE_EVERYWHERE, echo_llm)
    assert wrote.failure == "", (wrote.error, wrote.output[-300:])
    written = json.loads(wrote.answer)
    assert written["wrote"], "the job could write nowhere: the test would prove nothing"
    assert all(ident >= 0 for ident in written["sysv"]), written  # the objects were really created
    seen = json.loads(attack_pool.workflow(FIND_LEFTOVERS, echo_llm).answer)
    assert seen["found"] == [], f"left behind after writing in {written['wrote']}"
    assert all(rows == [] for rows in seen["sysv"].values()), seen["sysv"]


def test_runtime_files_on_the_host_are_untouched(attack_pool):
    assert "EVIL" not in open(flowpo_operators.__file__).read()
