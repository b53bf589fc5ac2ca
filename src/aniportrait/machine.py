"""The machine a measurement ran on: the CPU's name and the bfloat16 matrix path it offers.

Benchmarks, the estimator's training record and the default model's measurements store these next to their
figures, so that every number says where it came from. Linux reports both in ``/proc/cpuinfo``; elsewhere the
name falls back to :func:`platform.processor` and the path to ``"unknown"``.
"""

from __future__ import annotations

import platform
from pathlib import Path

__all__ = ["bf16_matmul_path", "cpu_name", "parse_cpuinfo"]

CPUINFO = Path("/proc/cpuinfo")


def parse_cpuinfo(text: str) -> dict[str, str | set[str]]:
    """The first processor's ``model name`` and ``flags`` (a set) from the text of ``/proc/cpuinfo``."""
    info: dict[str, str | set[str]] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key = key.strip()
        if key == "model name" and "name" not in info:
            info["name"] = value.strip()
        elif key == "flags" and "flags" not in info:
            info["flags"] = set(value.split())
    return info


def _cpuinfo() -> dict[str, str | set[str]]:
    try:
        return parse_cpuinfo(CPUINFO.read_text())
    except OSError:
        return {}


def cpu_name() -> str:
    """The CPU's model name, e.g. ``"AMD EPYC 7B13"``."""
    return str(_cpuinfo().get("name") or platform.processor() or platform.machine() or "unknown")


def bf16_matmul_path(flags: set[str] | None = None) -> str:
    """Which bfloat16 matrix instructions oneDNN can use here: ``"AMX-BF16"`` (Intel Sapphire Rapids and later),
    ``"AVX512-BF16"`` (e.g. AMD Zen 4, Intel Cooper Lake), ``"none"`` (bfloat16 is emulated in fp32), or
    ``"unknown"`` where the flags cannot be read."""
    if flags is None:
        read = _cpuinfo().get("flags")
        if read is None:
            return "unknown"
        flags = set(read)
    if "amx_bf16" in flags:
        return "AMX-BF16"
    if "avx512_bf16" in flags:
        return "AVX512-BF16"
    return "none"
