"""The versions a job really ran with on its compute node (not the login node's), recorded in the
element's state file: the first place to look when two attempts or two runs disagree."""
from __future__ import annotations

import importlib.metadata
import platform
import sys
from typing import Any

PACKAGES = ("mftlaunch", "torch", "transformers", "peft", "deepspeed", "bitsandbytes", "accelerate", "vllm")


def runtime_versions() -> dict[str, Any]:
    """Installed package versions (None: not installed), and CUDA once the stage imported torch
    (importing it here would cost the CPU-only stages seconds)."""
    found: dict[str, Any] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    torch = sys.modules.get("torch")
    if torch is not None:
        found["cuda"] = torch.version.cuda
        found["cuda_available"] = bool(torch.cuda.is_available())
        if found["cuda_available"]:
            found["gpu"] = torch.cuda.get_device_name(0)
    return found
