"""Project-wide test settings: no test writes outside its temporary folders."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# Tests share 2 CPU cores; more torch threads only add contention.
os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(autouse=True, scope="session")
def _isolated_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Point the app's and the job backend's default data folder at a temporary one."""
    previous = os.environ.get("NOCODE_ML_DATA_DIR")
    data_dir = tmp_path_factory.mktemp("nocode-ml-data")
    os.environ["NOCODE_ML_DATA_DIR"] = str(data_dir)
    yield data_dir
    if previous is None:
        os.environ.pop("NOCODE_ML_DATA_DIR", None)
    else:
        os.environ["NOCODE_ML_DATA_DIR"] = previous
