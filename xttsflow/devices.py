"""Which PyTorch device a stage runs on: `auto` picks the GPU when there is one."""

from __future__ import annotations

from .errors import XttsflowError


def resolve_device(device: str = "auto") -> str:
    """'auto' -> 'cuda' or 'cpu'; a CUDA device asked for on a machine without one is a clear error."""
    import torch  # imported here: the stages that never touch torch should not pay for it

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise XttsflowError(f"device {device!r} was asked for but no CUDA GPU is available — use device: cpu or auto")
    return device
