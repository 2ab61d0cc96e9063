"""One line naming the hardware and software a benchmark's figures came from (shared by bench scripts)."""

import os
import platform


def machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), cpu)
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return (f"{platform.system()} {platform.machine()} | {cpu} | {cores} cores | GPU {gpu} | "
            f"python {platform.python_version()} | torch {torch.__version__}")
