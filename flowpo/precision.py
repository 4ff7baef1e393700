"""The floating-point type a model computes in, decided by the process that runs it.

bf16 is the fast type on GPUs and on CPUs that multiply it natively (x86 with AVX512-BF16 or AMX).
Other CPUs emulate it. Measured on an AMD EPYC (Zen 2, AVX2 only) with torch 2.13: a bf16 matmul
ran 100x slower than fp32 (1.4 against 138 GFLOP/s), the learner's round went from about a minute
to over twenty, and vLLM 0.32 generated 3.3x slower in bf16 (docs/performance.md, "Precision"). So the engines'
"auto" and the learner's bf16 fall back to fp32 on such a CPU. Each actor decides for the node it
runs on: a cluster's nodes differ. torch is imported only when asked (the driver never is)."""
from __future__ import annotations

import platform


def cpu_multiplies_bf16() -> bool:
    """Whether this machine's CPU has bf16 arithmetic (x86: AVX512-BF16 or AMX). Other architectures
    are not checked and count as having it, so what was asked for is kept there."""
    import torch

    if platform.machine().lower() not in ("x86_64", "amd64"):
        return True
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def engine_dtype(requested: str, *, on_cpu: bool, native_bf16: bool) -> str:
    """vLLM's dtype: "auto" (the checkpoint's type, bf16 for most models) becomes float32 on a CPU
    that emulates bf16. A type named explicitly is kept."""
    return "float32" if requested == "auto" and on_cpu and not native_bf16 else requested


def learner_bf16(requested: bool, *, on_cpu: bool, native_bf16: bool) -> bool:
    """train.bf16, unless the learner runs on a CPU that emulates bf16."""
    return requested and (not on_cpu or native_bf16)


def local_engine_dtype(requested: str) -> str:
    """engine_dtype for the engine this process starts (no visible GPU: it runs on the CPU)."""
    import torch

    return engine_dtype(requested, on_cpu=not torch.cuda.is_available(), native_bf16=cpu_multiplies_bf16())
