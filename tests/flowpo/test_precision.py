"""flowpo.precision: bf16 only where the device computes it (issue found on an AVX2-only EPYC, where a
bf16 matmul ran 100x slower than fp32). The decisions are pure; the probe is checked against the
CPU flags the kernel reports."""
from __future__ import annotations

import platform
from pathlib import Path

import pytest

from flowpo.precision import cpu_multiplies_bf16, engine_dtype, learner_bf16


@pytest.mark.parametrize("requested, on_cpu, native, expected", [
    ("auto", True, False, "float32"),      # the checkpoint's bf16 would be emulated
    ("auto", True, True, "auto"),          # AVX512-BF16 / AMX: the checkpoint's type
    ("auto", False, False, "auto"),        # a GPU engine: vLLM's own choice
    ("bfloat16", True, False, "bfloat16"),  # named explicitly: kept
    ("float16", True, False, "float16"),
])
def test_the_engine_dtype_falls_back_to_fp32_only_for_auto_on_an_emulating_cpu(requested, on_cpu, native, expected):
    assert engine_dtype(requested, on_cpu=on_cpu, native_bf16=native) == expected


def test_the_learner_keeps_bf16_on_a_gpu_and_on_a_bf16_cpu_only():
    assert learner_bf16(True, on_cpu=False, native_bf16=False)
    assert learner_bf16(True, on_cpu=True, native_bf16=True)
    assert not learner_bf16(True, on_cpu=True, native_bf16=False)
    assert not learner_bf16(False, on_cpu=False, native_bf16=True)


@pytest.mark.skipif(platform.machine() != "x86_64" or not Path("/proc/cpuinfo").exists(),
                    reason="the probe is read against Linux x86 CPU flags")
def test_the_probe_agrees_with_the_cpu_flags_the_kernel_reports():
    flags = set(next(line for line in Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("flags")).split(":", 1)[1].split())
    assert cpu_multiplies_bf16() == bool({"avx512_bf16", "amx_tile"} & flags)
