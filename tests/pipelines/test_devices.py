"""One device rule for the engines, the command line and the job worker."""

from __future__ import annotations

import pytest
import torch

from pipelines.devices import limit_cpu_threads, resolve_device, torch_device
from pipelines.errors import InvalidInput

HAS_GPU = torch.cuda.is_available()


def test_auto_is_the_gpu_only_when_torch_sees_one() -> None:
    assert resolve_device("auto") == ("cuda" if HAS_GPU else "cpu")
    assert resolve_device(None) == "cpu"
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("cuda:1") == "cuda:1"  # kept; torch_device checks it
    assert torch_device("auto").type == ("cuda" if HAS_GPU else "cpu")


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("tpu", "unknown device 'tpu'"),
        ("mps", "unknown device 'mps'"),
        ("cuda:99", r"device 'cuda:99' (was asked for|does not exist)"),
    ],
)
def test_a_device_this_machine_cannot_run_is_a_one_line_error(name: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message) as error:
        torch_device(name)
    assert "\n" not in str(error.value)


def test_a_thread_cap_only_lowers_the_process_share() -> None:
    """0 (the engines' default) keeps the threads a job worker or the machine gave."""
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        limit_cpu_threads(0)
        assert torch.get_num_threads() == 2
        limit_cpu_threads(8)
        assert torch.get_num_threads() == 2
        limit_cpu_threads(1)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
