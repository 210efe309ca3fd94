"""The CLI shell: help, one-line errors with exit status 2, the installed console script."""

from __future__ import annotations

import json
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


def test_train_and_predict_from_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The issue's two commands with their defaults (``--device auto``), tiny network."""
    assert main(["synth", str(tmp_path / "s"), "--size", "192", "--seed", "1"]) == 0
    tiny = ["channels=[4,8]", "patch_px=32", "batch_size=2", "max_steps=4"]
    train = ["train", str(tmp_path / "s" / "labels.json"), "--task", "detect"]
    train += ["--out", str(tmp_path / "model"), "--minutes", "1"]
    assert main(train + [arg for item in tiny for arg in ("--set", item)]) == 0
    info = json.loads((tmp_path / "model" / "model.json").read_text())
    assert info["engine"] == "unet" and info["metrics"]["train_steps"] == 4
    out = tmp_path / "found"
    assert main(["predict", str(tmp_path / "model"), str(tmp_path / "s"), "--out", str(out)]) == 0
    names = sorted(p.name for p in out.iterdir())
    # the image is copied beside its LabelMe file so that labelme opens the pair
    assert names == ["image.json", "image.tif", "image_overlay.png", "image_stats.csv"]
    assert f"wrote 3 files to {out}" in capsys.readouterr().out  # the outputs


def test_bad_training_settings_and_outputs_are_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["synth", str(tmp_path / "s"), "--size", "128", "--seed", "2"]) == 0
    labels = str(tmp_path / "s" / "labels.json")
    capsys.readouterr()
    cases = [
        (["--out", str(tmp_path / "m"), "--set", "batch_size=abc"], "batch_size='abc'"),
        (["--out", str(tmp_path / "s")], "not a model folder"),  # would have wiped the sample
        (["--out", str(tmp_path / "m"), "--device", "tpu"], "tpu"),
    ]
    for extra, message in cases:
        assert main(["train", labels, "--task", "detect", *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and message in err and "\n" not in err
    assert (tmp_path / "s" / "image.tif").is_file()
    assert not (tmp_path / "m").exists()


def test_a_file_system_error_is_one_line_and_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import pipelines.synthetic

    def disk_full(sample: object, folder: Path) -> None:
        raise OSError(28, "No space left on device", str(folder / "image.tif"))

    monkeypatch.setattr(pipelines.synthetic, "write_sample", disk_full)
    assert main(["synth", str(tmp_path / "s"), "--size", "64"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"error: No space left on device ({tmp_path / 's' / 'image.tif'})"


def test_output_piped_into_head_stops_quietly() -> None:
    """``nocode-ml stats *.json | head``: no BrokenPipeError traceback when head exits."""
    script = (
        "import sys\n"
        "from nocode_ml import cli\n"
        "build = cli.build_parser\n"
        "def lines(args):\n"
        "    for i in range(200_000):\n"
        "        print(i)\n"
        "def parser():\n"
        "    made = build()\n"
        "    made.set_defaults(handler=lines)\n"
        "    return made\n"
        "cli.build_parser = parser\n"
        "sys.exit(cli.main([]))\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert process.stdout is not None and process.stderr is not None
    assert process.stdout.readline() == b"0\n"
    process.stdout.close()
    assert process.wait(timeout=60) == 1
    assert process.stderr.read() == b""


def test_another_broken_pipe_is_an_error_not_silence(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only a closed standard output ends quietly; a pipe to some other process is an error."""
    import pipelines.synthetic

    def helper_went_away(sample: object, folder: Path) -> None:
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(pipelines.synthetic, "write_sample", helper_went_away)
    assert main(["synth", str(tmp_path / "s"), "--size", "64"]) == 1
    assert capsys.readouterr().err.strip() == "error: Broken pipe"
