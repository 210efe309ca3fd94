"""Which torch device a run uses: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``.

One rule for every engine, the command line and the job worker, so ``auto`` means the same
everywhere and a missing GPU is the same one-line error.
"""

from __future__ import annotations

from typing import Any

from pipelines.errors import InvalidInput


def resolve_device(requested: str | None) -> str:
    """``"auto"`` is ``"cuda"`` when PyTorch sees a GPU, else ``"cpu"``; empty is ``"cpu"``;
    other names are kept (:func:`torch_device` checks them)."""
    name = str(requested or "cpu")
    if name != "auto":
        return name
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def torch_device(requested: str | None) -> Any:
    """The ``torch.device`` of ``requested``, checked against this machine."""
    import torch

    name = resolve_device(requested)
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InvalidInput(f"device '{name}' was asked for but no GPU is available; use cpu")
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise InvalidInput(f"unknown device '{name}'; use cpu, cuda or cuda:N") from error
    if device.type not in ("cpu", "cuda"):
        raise InvalidInput(f"unknown device '{name}'; use cpu, cuda or cuda:N")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise InvalidInput(
            f"device '{name}' does not exist: this machine has {torch.cuda.device_count()} GPU(s)"
        )
    return device


def limit_cpu_threads(cap: int) -> None:
    """Use at most ``cap`` CPU threads in torch; 0 keeps what the process has (every core for
    the command line, its share of the cores for a job worker). A cap never raises a share."""
    if cap > 0:
        import torch

        torch.set_num_threads(max(1, min(cap, torch.get_num_threads())))
