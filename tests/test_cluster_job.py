"""`ray job submit`, end to end: a real two-node Ray cluster started with `ray start` the way a user
starts one (token authentication on, the job API on 127.0.0.1), FlowPO submitted with docs/cluster.md's
own command line, stopped with `ray job stop` in the middle of round 1, resumed by a second
submission of `flowpo train --resume RUN_DIR` that loses its executor node mid-round (the job fails
with a message that says so), resumed again once the node is back, and nothing left behind.

Both nodes run on this machine, each with its own ports and, as real nodes, its own disk: each node
starts in a private mount namespace (`node_argv`) with its own /tmp, /dev/shm and home directory, and
the other node's files (the head's run directory and config among them) are hidden under an empty
tmpfs. A path one node makes and another uses fails here as it does between two machines. The Docker
engine is the host's, so the executor node, which starts the sandboxes, keeps the engine's view of
its files: its temporary directory (TMPDIR) is a path the engine sees as the node does; the head's
/tmp is its own, which no container can mount.

Every process of the cluster carries the test's directory in its environment (the token path): that
is how the test finds its own processes and sandboxes, and tears the cluster down without `ray stop`,
which would stop every Ray process on the machine (another test's, a user's)."""
from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from bench.common import free_port, raylet_ports

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.stack, pytest.mark.ray, pytest.mark.docker,
              pytest.mark.vllm]

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # the virtualenv's: `ray` and `flowpo` come from there
PROBLEMS = ["HumanEval/23", "HumanEval/53"]  # strlen and add: the embedded model passes some, fails some
K = 4
TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}
KEY = "sk-flowpo-cluster-test-" + secrets.token_hex(8)
# Ray's own detached service, created by Ray Train for the cluster and kept for the next job.
RAY_SERVICES = {("AutoscalingCoordinator", "_AutoscalingCoordinatorActor")}


@dataclass(frozen=True)
class NodeDisk:
    """What one simulated node has of its own: a directory of the host that holds its /tmp (``tmp``),
    its home directory (``home``) and Ray's temp dir (``ray``)."""
    root: Path

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def ray(self) -> Path:
        return self.root / "ray"

    def make(self) -> None:
        for path in (self.tmp, self.home, self.ray):
            path.mkdir(parents=True, exist_ok=True)
        self.tmp.chmod(0o1777)


def node_argv(argv: list[str], *, own_tmp: Path | None, hide: list[Path], binds: dict[Path, Path],
              keep: Path | None = None) -> list[str]:
    """``argv`` in a private mount namespace, as on a machine of its own: a fresh /dev/shm, ``own_tmp``
    mounted on /tmp, every path of ``hide`` (the other nodes' disks) an empty tmpfs, and ``binds``
    (host path -> path on the node, read-only) for what a node's set-up installs on it. Everything
    the command starts (Ray's daemons, workers, actors) stays in that namespace. The checkout and
    its virtualenv (REPO) stay where they are, as `ray up` installs them on every node, also when
    they lie under /tmp (``keep``: a directory outside /tmp to carry it across the new /tmp)."""
    steps = ["set -eu", "mount -t tmpfs -o size=8g,mode=1777 fpc-shm /dev/shm"]
    steps += [f"mount -t tmpfs -o size=1m,mode=0555,ro fpc-elsewhere {shlex.quote(str(p))}" for p in hide]
    if own_tmp is not None:
        carried = own_tmp is not None and keep is not None and REPO.is_relative_to("/tmp")
        repo, kept = shlex.quote(str(REPO)), shlex.quote(str(keep))
        if carried:  # hold the checkout by another path while /tmp is covered, then put it back
            steps += [f"mkdir -p {kept}", f"mount --bind {repo} {kept}"]
        steps.append(f"mount --bind {shlex.quote(str(own_tmp))} /tmp")
        if carried:
            steps += [f"mkdir -p {repo}", f"mount --bind {kept} {repo}"]
    for source, target in binds.items():
        source, target = shlex.quote(str(source)), shlex.quote(str(target))
        steps += [f"mkdir -p {target}", f"mount --bind {source} {target}", f"mount -o remount,bind,ro {target}"]
    steps.append('exec "$@"')
    return ["unshare", "--mount", "--propagation", "private", "--", "bash", "-c", "\n".join(steps), "node", *argv]


@dataclass
class Cluster:
    root: Path
    env: dict  # the test's own commands (`ray job`, `ray list`): the host's view
    head: NodeDisk = None
    executor: NodeDisk = None
    model_dir: str = ""  # installed on the head, where the generator and the learner run
    gcs: str = ""
    dashboard: str = ""
    executor_node: str = ""
    executor_nodes: set = field(default_factory=set)  # every node the executor node ever was (it is restarted)
    containers: set = field(default_factory=set)  # every sandbox container of this cluster seen so far
    passed: bool = False  # set by the test at its end: a failed run keeps the cluster's logs

    @property
    def marker(self) -> bytes:
        return f"{self.root}/".encode()

    def ray(self, *args: str, timeout: float = 120, check: bool = True, node: str = "") -> str:
        """``ray ARGS``, from the host, or as node ``head`` or ``executor`` (`ray start`) on its own disk."""
        argv, env = [str(BIN / "ray"), *args], self.env
        if node:
            argv, env = self.on_node(node, argv)
        proc = subprocess.run(argv, env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode:
            raise AssertionError(f"ray {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
        return proc.stdout

    def on_node(self, node: str, argv: list[str]) -> tuple[list[str], dict]:
        """(argv, env) that run ``argv`` on node ``head`` or ``executor``. Each has its own home (no
        shared caches, ~/.ray or Hugging Face token) and /tmp. The Docker engine is the host's, so
        the executor node, which starts sandboxes, names its temporary files by the paths the engine
        sees (TMPDIR on the host side of its disk); the head's /tmp is private."""
        disk, other = (self.head, self.executor) if node == "head" else (self.executor, self.head)
        env = {k: v for k, v in self.env.items() if k not in ("TMPDIR", "RAY_ADDRESS")}
        env["HOME"] = str(disk.home)
        binds = {}
        if node == "head":  # the embedded model, where `make model` puts it on the node
            binds[Path(self.model_dir)] = disk.home / Path(self.model_dir).relative_to(Path.home())
            return node_argv(argv, own_tmp=disk.tmp, hide=[other.root], binds=binds, keep=disk.root / "checkout"), env
        env["TMPDIR"] = str(disk.tmp)
        return node_argv(argv, own_tmp=None, hide=[other.root], binds=binds), env

    def api(self, path: str) -> dict:
        """GET the cluster's HTTP API (the dashboard's), with the token, as `ray job status` and `ray list`
        ask it. The polls of the test ask it directly: each `ray` command costs about 2 s of CPU here."""
        token = Path(self.env["RAY_AUTH_TOKEN_PATH"]).read_text().strip()
        request = urllib.request.Request(self.dashboard + path, headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.load(response)

    def job_status(self, job_id: str) -> str:
        return self.api(f"/api/jobs/{job_id}")["status"]

    def actors(self) -> list[dict]:
        """`ray list actors --detail --limit 10000`'s rows."""
        reply = self.api("/api/v0/actors?detail=1&limit=10000")
        assert reply["result"], reply.get("msg")
        return reply["data"]["result"]["result"]

    def alive_actors(self, class_name: str) -> list[dict]:
        return [a for a in self.actors() if a["state"] == "ALIVE" and a.get("class_name") == class_name]

    def processes(self) -> list:
        """This cluster's processes: everything started from `ray start` inherits the marker."""
        import psutil

        found = []
        for proc in psutil.process_iter():
            try:
                if proc.pid != os.getpid() and self.marker in Path(f"/proc/{proc.pid}/environ").read_bytes():
                    found.append(proc)
            except OSError:
                continue
        return found

    def scan_environments(self, seen: dict) -> None:
        """Record, for each of this cluster's processes, whether its environment holds the executor
        LLM's key (ray job submit's env_vars), with its ancestors: pid -> (holds, ancestors, cmdline)."""
        import psutil

        for proc in self.processes():
            try:
                environ = Path(f"/proc/{proc.pid}/environ").read_bytes()
                seen[proc.pid] = (f"OPENAI_API_KEY={KEY}".encode() in environ, {p.pid for p in proc.parents()},
                                  " ".join(proc.cmdline())[:120])
            except (OSError, psutil.Error):
                continue

    def sandbox_containers(self) -> set[str]:
        """Running sandbox containers of this cluster: their runtime mount lies on the executor node's disk."""
        ids = subprocess.run(["docker", "ps", "-q", "--no-trunc", "--filter", "label=flowpo.sandbox=1"],
                             capture_output=True, text=True, timeout=60).stdout.split()
        if not ids:
            return set()
        inspected = subprocess.run(["docker", "inspect", *ids], capture_output=True, text=True, timeout=60)
        ours = {c["Id"] for c in json.loads(inspected.stdout or "[]")
                if any(m.get("Source", "").startswith(str(self.root)) for m in c.get("Mounts", []))}
        self.containers |= ours
        return ours

    def supervisors(self) -> list[int]:
        """Sandbox supervisor processes of this cluster: in one of its containers, or started by it."""
        import psutil

        pids = []
        for proc in psutil.process_iter(["cmdline"]):
            if "flowpo_supervisor" not in " ".join(proc.info["cmdline"] or []):
                continue
            try:
                cgroup = Path(f"/proc/{proc.pid}/cgroup").read_text()
                environ = Path(f"/proc/{proc.pid}/environ").read_bytes()
            except OSError:
                continue
            if self.marker in environ or any(cid in cgroup for cid in self.containers):
                pids.append(proc.pid)
        return pids

    def start_executor_node(self) -> None:
        """`ray start --address` of the node with the `executor` resource; waits until it has joined."""
        self.ray("start", "--address", self.gcs, "--num-cpus", "2", "--resources", json.dumps({"executor": 4}),
                 "--disable-usage-stats", "--temp-dir", str(self.executor.ray), *raylet_ports(), timeout=180,
                 node="executor")
        deadline = time.monotonic() + 60
        while True:
            nodes = json.loads(self.ray("list", "nodes", "--detail", "--format", "json", "--filter", "state=ALIVE"))
            found = [n["node_id"] for n in nodes if "executor" in n.get("resources_total", {})]
            if found:
                self.executor_node, = found
                self.executor_nodes.add(self.executor_node)
                return
            assert time.monotonic() < deadline, f"the executor node did not join: {nodes}"
            time.sleep(2)

    def lose_executor_node(self) -> None:
        """The executor node disappears, as a machine does: its raylet and everything under it are
        killed at once (no clean-up runs), and its sandbox containers go with it."""
        import psutil

        raylets = [p for p in self.processes() if p.name() == "raylet" and "executor" in " ".join(p.cmdline())]
        assert len(raylets) == 1, [" ".join(p.cmdline())[:200] for p in raylets]
        doomed = [raylets[0], *raylets[0].children(recursive=True)]
        for proc in doomed:
            try:
                proc.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(doomed, timeout=10)
        left = self.sandbox_containers()
        if left:
            subprocess.run(["docker", "rm", "-f", *left], capture_output=True, timeout=120)

    def teardown(self) -> None:
        """What `ray stop` does (SIGTERM, a grace period, SIGKILL), to this cluster's processes only;
        the grace is shorter than `ray stop`'s 16 s: nothing of this cluster is kept."""
        import psutil

        for _ in range(2):  # a second pass for what a dying process started meanwhile
            procs = self.processes()
            for proc in procs:
                try:
                    proc.terminate()
                except psutil.Error:
                    pass
            _, alive = psutil.wait_procs(procs, timeout=5)
            for proc in alive:
                try:
                    proc.kill()
                except psutil.Error:
                    pass
            psutil.wait_procs(alive, timeout=5)
        left = self.sandbox_containers()
        if left:
            subprocess.run(["docker", "rm", "-f", *left], capture_output=True, timeout=120)


@pytest.fixture
def another_ray_on_the_machine():
    """The head's machine runs a second Ray instance, as a shared machine does (another user's, or
    the test session's own). Ray finds the instances of a machine by their raylets' command lines
    (``ray._private.services.find_gcs_addresses``); this process has one's, naming a GCS that is not
    there. A worker that finds its cluster by that scan instead of by its address meets two and
    fails: always, not only while some other Ray happens to run on this machine."""
    from ray._private.services import _find_address_from_flag

    decoy = f"127.0.0.1:{free_port()}"
    proc = subprocess.Popen([str(Path(tempfile.gettempdir()) / "raylet"), "-c", "import time; time.sleep(86400)",
                             f"--gcs-address={decoy}"], executable=sys.executable)
    try:
        deadline = time.monotonic() + 30
        while decoy not in _find_address_from_flag("--gcs-address"):
            assert proc.poll() is None and time.monotonic() < deadline, "Ray's scan does not see the decoy raylet"
            time.sleep(0.2)
        yield decoy
    finally:
        proc.kill()
        proc.wait()


@pytest.fixture
def cluster(model_dir, docker_backend, vllm_available):
    # A short root (Ray's unix sockets live under each node's --temp-dir, at most 107 bytes a path),
    # outside /tmp, which the head mounts its own /tmp over.
    root = Path(tempfile.mkdtemp(prefix="fpc-", dir="/var/tmp"))
    token = root / "auth_token"  # the same token on every node, as cluster.yaml's file_mounts copy it
    token.write_text(secrets.token_hex(32))
    token.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_") and k != "TMPDIR"}
    env.update(
        # Token authentication, as on a user's cluster. Every node and every client needs both: the
        # mode (a node joining with --address does not infer it) and the token (a file here, so the
        # test neither reads nor writes ~/.ray/auth_token).
        RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token),
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",  # as cluster.yaml: the virtualenv's bin first
        # Ray's memory monitor kills workers when the whole machine runs short, and here the machine
        # also holds the test session's other processes: it would kill this run for their memory.
        RAY_memory_monitor_refresh_ms="0",
        # `ray job stop` without its grace: SIGTERM, then SIGKILL at once (default: after 3 s), as when
        # a loaded driver's clean-up outlasts the grace (met in CI). What a stopped job leaves behind
        # must not depend on the driver's own clean-up.
        RAY_JOB_STOP_WAIT_TIME_S="0",
    )
    env.pop("OPENAI_API_KEY", None)  # the nodes never have it: it comes with the job (see Submission)
    c = Cluster(root, env, head=NodeDisk(root / "h"), executor=NodeDisk(root / "x"), model_dir=model_dir)
    c.head.make()
    c.executor.make()
    began = time.monotonic()
    gcs_port, dashboard_port = free_port(), free_port()
    c.gcs, c.dashboard = f"127.0.0.1:{gcs_port}", f"http://127.0.0.1:{dashboard_port}"
    try:
        c.ray("start", "--head", "--port", str(gcs_port), "--dashboard-host", "127.0.0.1",
              "--dashboard-port", str(dashboard_port), "--num-cpus", "2", "--disable-usage-stats",
              # the GPU node's part: see generator.resources and train.resources
              "--resources", json.dumps({"generator": 1, "learner": 1}),
              "--temp-dir", str(c.head.ray), "--ray-client-server-port", str(free_port()), *raylet_ports(),
              timeout=180, node="head")
        c.env["RAY_ADDRESS"] = c.dashboard  # `ray list`, `ray job ...`: the job API, with the token
        c.start_executor_node()
        print(f"cluster up in {time.monotonic() - began:.0f} s")
        yield c
    finally:
        began = time.monotonic()
        c.teardown()
        print(f"cluster down in {time.monotonic() - began:.0f} s")
        if c.passed:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"cluster logs kept in {c.head.ray} and {c.executor.ray}")


def readme_commands() -> tuple[str, str]:
    """(RAY_ADDRESS, `ray job submit` command line) from docs/cluster.md, as written."""
    section = (REPO / "docs" / "cluster.md").read_text()
    for block in re.findall(r"```bash\n(.*?)```", section, re.S):
        lines = [line.split(" # ")[0].strip() for line in block.replace("\\\n", " ").splitlines()]
        submit = [line for line in lines if line.startswith("ray job submit ")]
        address = [m.group(1) for line in lines if (m := re.match(r"export RAY_ADDRESS=(\S+)$", line))]
        if submit and address:
            return address[0], submit[0]
    raise AssertionError("docs/cluster.md: no bash block with `export RAY_ADDRESS=` "
                         "and `ray job submit`")


class Submission:
    """docs/cluster.md's `ray job submit` (it follows the job's logs until the job ends), in the background."""

    def __init__(self, cluster: Cluster, command: str):
        self.output: list[str] = []
        # docs/cluster.md's command hands the submitting shell's key to the job; the driver gives it to the
        # executor LLM brokers (the test's vLLM server takes any key).
        env = {**cluster.env, "OPENAI_API_KEY": KEY}
        self.proc = subprocess.Popen(["bash", "-c", command], cwd=REPO, env=env, text=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.reader = threading.Thread(target=lambda: self.output.extend(self.proc.stdout), daemon=True)
        self.reader.start()
        deadline = time.monotonic() + 180
        while not (found := re.search(r"Job '(raysubmit_\w+)' submitted successfully", self.text)):
            assert self.proc.poll() is None and time.monotonic() < deadline, f"submission failed:\n{self.text}"
            time.sleep(0.5)
        self.job_id = found.group(1)

    @property
    def text(self) -> str:
        return "".join(self.output)

    def finish(self, timeout: float = 120) -> None:
        try:
            self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(10)
            self.reader.join(10)


def sample_lines(run_dir: Path) -> int:
    path = run_dir / "samples.jsonl"
    return path.read_bytes().count(b"\n") if path.is_file() else 0


def wait_for_job(cluster: Cluster, job_id: str, run_dir: Path, timeout: float, environments: dict) -> str:
    """Poll `ray job status` until the job ends: often once the run has logged run_end, otherwise
    every 15 s (each `ray` command costs seconds of CPU on a 2-core machine)."""
    deadline = time.monotonic() + timeout
    asked = 0.0
    while True:
        ended = b'"event": "run_end"' in ((run_dir / "metrics.jsonl").read_bytes().splitlines() or [b""])[-1]
        if ended or time.monotonic() - asked > 15:
            asked = time.monotonic()
            if (status := cluster.job_status(job_id)) in TERMINAL:
                return status
            assert asked < deadline, f"job {job_id} still {status} after {timeout:.0f} s"
        cluster.sandbox_containers()  # remembered for the supervisor check at the end
        cluster.scan_environments(environments)
        time.sleep(1 if ended else 2)


def test_job_submit_stop_resume_on_a_two_node_cluster(another_ray_on_the_machine, cluster, executor_llm_url):
    run_dir = cluster.head.root / "run"  # on the head's disk: the executor node cannot see it
    config = yaml.safe_load((REPO / "examples" / "local.yaml").read_text())
    config.update(name="cluster-job", run_dir=str(run_dir), rounds=1)
    config["task"]["problem_ids"] = PROBLEMS
    config["generator"].update(k=K, max_tokens=96)
    # The executor LLM as on a cluster: an OpenAI-compatible endpoint (the test session's vLLM server
    # with the embedded model) and the key from `ray job submit`; no engine to start in each job. The
    # variable is named, as it is by default for OpenAI's API (executor_llm.key_env): a server of one's
    # own needs no key, and none would be read or withheld; named, the driver reads it and withholds it.
    config["executor_llm"].update(backend="openai", base_url=executor_llm_url, model="flowpo-executor",
                                  api_key_env="OPENAI_API_KEY")
    # One executor with one sandbox: round 1's samples arrive one after the other, so the job can be
    # stopped between the first and the last. Executors and evaluators go to the executor node.
    config["sandbox"].update(executor_resources={"executor": 1}, num_executors=1, sandboxes_per_executor=1)
    # The generator stays on the head, as on a cluster whose GPU nodes alone can hold it: left to Ray,
    # it went to the executor node once (the head was still freeing the stopped job's CPUs), and the
    # lost node took it along.
    config["generator"].update(resources={"generator": 1})
    # So does the learner (train.resources): once a resumed job's worker went to the executor node,
    # whose disk has no model, and the job failed ("model directory ... does not exist").
    config["train"].update(num_pairs=1, grad_accum_steps=1, resources={"learner": 1})
    # A lost node's actors are given up after 20 s (default 600 s: a restart may take minutes).
    config["pipeline"] = {**config.get("pipeline", {}), "actor_timeout_s": 20}
    config_path = cluster.head.root / "cluster-job.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    total = K * len(PROBLEMS)

    address, submit = readme_commands()
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", address), address
    cluster.env["RAY_ADDRESS"] = re.sub(r":\d+$", ":" + cluster.dashboard.rsplit(":", 1)[1], address)
    entry = re.search(r" -- flowpo train (\S+\.yaml)$", submit)
    assert entry, f"docs/cluster.md's `ray job submit` does not end in `-- flowpo train CONFIG.yaml`: {submit}"
    first_command = submit[:entry.start(1)] + str(config_path)
    resume_command = submit[:entry.start(1)] + f"--resume {run_dir}"
    began = time.monotonic()

    # 0. A job whose run directory is relative fails at once: it would land in Ray's working copy. It
    # runs before the first, not beside it: Ray 2.60 unpacks a job's working_dir with overwrite=True,
    # so a second job of the same code that starts while the first is being set up deletes and
    # re-extracts the directory under the first's imports (met in CI: ModuleNotFoundError).
    relative = Submission(cluster, f"{first_command} run_dir=runs/cluster-job")
    relative.finish()
    assert cluster.job_status(relative.job_id) == "FAILED", relative.text
    assert "run_dir runs/cluster-job is relative, and this is a Ray job" in relative.text, relative.text

    # 1. Submit, and stop the job once round 1 has written some but not all of its samples.
    first = Submission(cluster, first_command)
    deadline, looked = time.monotonic() + 420, 0.0
    while sample_lines(run_dir) < 1:
        assert first.proc.poll() is None, f"the job ended before its first sample:\n{first.text}"
        assert time.monotonic() < deadline, f"no sample after 420 s:\n{first.text}"
        if time.monotonic() - looked > 2:
            cluster.sandbox_containers()
            looked = time.monotonic()
        time.sleep(0.2)
    # The learner started ahead with round 1 (Ray Train's controller, and its detached cleaner of the
    # workers' placement group): the stop must leave nothing of it either.
    deadline = time.monotonic() + 120
    while not cluster.alive_actors("PlacementGroupCleaner"):
        assert time.monotonic() < deadline, f"the learner did not start ahead of round 1's end:\n{first.text}"
        time.sleep(2)
    cluster.ray("job", "stop", first.job_id)
    stopped_at = sample_lines(run_dir)
    first.finish()
    assert cluster.job_status(first.job_id) == "STOPPED", first.text
    deadline = time.monotonic() + 60
    while cluster.alive_actors("PlacementGroupCleaner"):
        assert time.monotonic() < deadline, "the stopped job's PlacementGroupCleaner is still alive after 60 s"
        time.sleep(2)
    assert 1 <= stopped_at < total, f"stopped after {stopped_at} of {total} samples: not in the middle of round 1"
    print(f"job 1 stopped after {stopped_at}/{total} samples, {time.monotonic() - began:.0f} s")

    # 2. A second submission resumes the run; its executor node disappears mid-round. The job ends
    # with a message that says what happened and how to go on; nothing finished is lost.
    second = Submission(cluster, resume_command)
    deadline, looked = time.monotonic() + 420, 0.0
    while sample_lines(run_dir) <= stopped_at:
        assert second.proc.poll() is None, f"the resumed job ended before its first sample:\n{second.text}"
        assert time.monotonic() < deadline, f"no new sample after 420 s:\n{second.text}"
        if time.monotonic() - looked > 2:  # `docker ps` and `docker inspect` five times a second cost the job CPU
            cluster.sandbox_containers()
            looked = time.monotonic()
        time.sleep(0.2)
    cluster.lose_executor_node()
    lost_at = sample_lines(run_dir)
    assert lost_at < total, f"the node was lost after {lost_at} of {total} samples: not in the middle of round 1"
    second.finish(timeout=300)
    logs = cluster.ray("job", "logs", second.job_id)
    assert cluster.job_status(second.job_id) == "FAILED", logs
    assert re.search(r"flowpo: error: the (execute|evaluate|dry_run) stage has no actor left: \S+-(executor|evaluator)"
                     r"-0 did not answer for 20 s\. Their node is gone", logs), logs
    assert "then resume with `flowpo train --resume RUN_DIR`" in logs, logs
    print(f"job 2 lost its executor node after {lost_at}/{total} samples, {time.monotonic() - began:.0f} s")

    # 3. The node comes back; a third submission resumes the run and completes it. Nothing is stopped
    # mid-round any more: its executor runs the round's last samples in 4 sandboxes at once (an override
    # after --resume, as a user gives one), not one after the other.
    cluster.start_executor_node()
    third = Submission(cluster, f"{resume_command} sandbox.sandboxes_per_executor=4")
    environments: dict = {}
    status = wait_for_job(cluster, third.job_id, run_dir, timeout=600, environments=environments)
    logs = cluster.ray("job", "logs", third.job_id)
    third.finish()
    assert status == "SUCCEEDED", f"resumed job {status}:\n{logs}"
    print(f"job 3 succeeded, {time.monotonic() - began:.0f} s")

    samples = [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]
    keys = [(s["round"], s["problem_id"], s["sample_index"]) for s in samples]
    assert len(keys) == len(set(keys)), "a sample was recorded twice"
    assert sorted(keys) == sorted((1, p, j) for p in PROBLEMS for j in range(K))
    events = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    names = [e["event"] for e in events]
    assert [e["resumed"] for e in events if e["event"] == "run_start"] == [False, True, True]
    resumed_start = next(e for e in events if e["event"] == "round_start" and e["resumed_samples"])
    assert resumed_start["resumed_samples"] >= stopped_at - 1  # at most one torn line is redone
    assert "round_end" in names and names[-1] == "run_end"
    if "train" in names:
        assert (run_dir / "adapters" / "round-1" / "adapter_model.safetensors").is_file()
    else:
        assert "train_skipped" in names
    assert (run_dir / "reports" / "round-1.md").is_file()
    assert re.search(r"^round 1 \[base\]: \d+/\d+ valid workflows", logs, re.M), logs
    assert f"round 1 report: {run_dir / 'reports' / 'round-1.md'}" in logs, logs

    # Executors and evaluators (both jobs') ran on the executor node, and every actor has ended: also
    # Ray Train's detached PlacementGroupCleaner of the stopped job 1, which ends once it sees its
    # controller gone (it finds its cluster by the job's RAY_ADDRESS: see another_ray_on_the_machine).
    deadline = time.monotonic() + 60
    while alive := [a for a in cluster.actors() if a["state"] == "ALIVE"
                    and (a.get("name"), a.get("class_name")) not in RAY_SERVICES]:
        assert time.monotonic() < deadline, f"actors still alive: {[(a['name'], a['class_name']) for a in alive]}"
        time.sleep(2)
    actors = cluster.actors()
    sandboxed = [a for a in actors if re.search(r"-(executor|evaluator)-\d+$", a.get("name") or "")]
    assert len(sandboxed) >= 6, [a.get("name") for a in actors]  # an executor and an evaluator per job
    assert {a["node_id"] for a in sandboxed} <= cluster.executor_nodes

    # The key came with the job (`env_vars`): the driver holds it (so does Ray's job supervisor, its
    # parent), but no actor of the run and no process they started (vLLM, learner, docker) does.
    workers = {a["pid"]: a["class_name"] for a in actors if a.get("pid") and a["class_name"] != "JobSupervisor"}
    assert any(holds and "flowpo train" in cmd for holds, _, cmd in environments.values()), "the driver had no key"
    assert {"Generator", "Executor"} <= {workers[pid] for pid in environments if pid in workers}, "blind check"
    leaks = [f"{pid} {cmd}" for pid, (holds, ancestors, cmd) in environments.items()
             if holds and ({pid, *ancestors} & workers.keys())]
    assert not leaks, f"the executor LLM's key reached the run's workers: {leaks}"

    # Nothing is left: no running job, no sandbox container, no supervisor.
    jobs = json.loads(cluster.ray("list", "jobs", "--format", "json"))
    assert [j["status"] for j in jobs if j["status"] not in TERMINAL] == []
    assert cluster.containers, "no sandbox container of this cluster was ever seen: the check below is blind"
    assert cluster.sandbox_containers() == set()
    assert cluster.supervisors() == []
    leftovers = []  # what the run's actors started (vLLM engines, docker clients), the stopped job's too
    for proc in cluster.processes():
        try:
            if re.search(r"VLLM::|EngineCore|docker run|flowpo train|flowpo_supervisor",
                         " ".join([proc.name(), *proc.cmdline()])):
                leftovers.append(f"{proc.pid}: {' '.join(proc.cmdline())[:120]}")
        except Exception:  # noqa: BLE001 - a process that ended meanwhile
            continue
    assert leftovers == [], leftovers
    trained = "trained" if "train" in names else "had no pair"
    print(f"test body took {time.monotonic() - began:.0f} s; round 1 {trained}")
    cluster.passed = True
