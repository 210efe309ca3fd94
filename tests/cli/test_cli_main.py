"""The CLI shell: help, one-line errors with exit status 2, the installed console script."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from nocode_ml.cli import main
from nocode_ml.cli.options import parse_config_overrides
from pipelines.errors import InvalidInput


def test_help_lists_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for command in ("train", "predict", "serve"):
        assert command in out


def test_user_error_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        ["predict", str(tmp_path / "missing_model"), str(tmp_path), "--out", str(tmp_path / "o")]
    )
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "does not exist" in err
    assert "\n" not in err


def test_config_overrides() -> None:
    assert parse_config_overrides(["seed=3", "name=unet", "sizes=[1,2]", "on=true"]) == {
        "seed": 3,
        "name": "unet",
        "sizes": [1, 2],
        "on": True,
    }
    with pytest.raises(InvalidInput, match="is not KEY=VALUE"):
        parse_config_overrides(["seed"])


def test_module_entry_point_runs() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "nocode_ml", "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0
    assert "nocode-ml" in result.stdout
