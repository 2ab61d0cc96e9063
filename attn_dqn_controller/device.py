"""Turn a device name from a config or command line into a torch.device.

Kept apart from the model so the learner, the policy and the CLI resolve
"auto" the same way, and so a request for CUDA on a CPU-only machine fails
with a message instead of a deep torch traceback later.
"""

from __future__ import annotations

import re

import torch

_CUDA_PATTERN = re.compile(r"^cuda(?::(\d+))?$")


def resolve_device(device: "str | torch.device" = "auto") -> torch.device:
    """"auto" -> CUDA when available else CPU; "cpu"; "cuda"; "cuda:N" (checked to exist)."""
    if isinstance(device, torch.device):
        device = str(device)
    if not isinstance(device, str):
        raise TypeError(f"device must be a string such as 'auto', 'cpu', 'cuda' or 'cuda:0', got {device!r}")
    name = device.strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    match = _CUDA_PATTERN.match(name)
    if match is None:
        raise ValueError(f"unknown device {device!r}: use 'auto', 'cpu', 'cuda' or 'cuda:N'")
    if not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} was requested but CUDA is not available on this machine "
                           f"(torch {torch.__version__}); use 'cpu' or 'auto'")
    if match.group(1) is not None:
        index = int(match.group(1))
        count = torch.cuda.device_count()
        if index >= count:
            raise RuntimeError(f"device {device!r} was requested but only {count} CUDA device(s) exist "
                               f"(valid: cuda:0..cuda:{count - 1})")
        return torch.device("cuda", index)
    return torch.device("cuda")


def cpu_has_native_bf16() -> bool:
    """True where the CPU multiplies bfloat16 in hardware (x86 AVX512_BF16 or AMX-BF16 flags).

    There a bf16 matmul measured 4x the float32 rate (bench/profile_learner.py); elsewhere torch
    emulates bf16 on CPU, which is slower than float32, so the learner keeps float32."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False
