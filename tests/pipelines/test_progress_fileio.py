"""Progress events with ETA, and atomic writes."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from nocode_ml.cli.progress_bar import TerminalProgress, format_seconds
from pipelines.fileio import atomic_path, atomic_write_json, sha256_file
from pipelines.progress import Progress, StageTimer


def test_stage_timer_reports_eta_from_mean_step_time() -> None:
    events: list[Progress] = []
    now = [0.0]
    timer = StageTimer(events.append, "train", total=10, clock=lambda: now[0])
    now[0] = 4.0
    timer.update(2, loss=0.5)
    assert events[-1].eta_s == pytest.approx(16.0)
    assert events[-1].fraction == pytest.approx(0.2)
    assert events[-1].metrics == {"loss": 0.5}


def test_stage_timer_throttles_but_always_reports_the_last_step() -> None:
    events: list[Progress] = []
    now = [0.0]
    timer = StageTimer(events.append, "predict", total=3, min_interval_s=10, clock=lambda: now[0])
    for step in (0, 1, 2, 3):
        now[0] += 1
        timer.update(step)
    assert [e.done for e in events] == [0, 3]


def test_terminal_progress_renders_a_bar() -> None:
    stream = io.StringIO()
    bar = TerminalProgress(stream=stream, width=10)
    bar(Progress("train", 5, 10, {"loss": 0.123}, eta_s=75))
    assert "train      [#####.....] 5/10 ETA 1:15 loss=0.123" in stream.getvalue()
    assert format_seconds(3725) == "1:02:05"


def test_atomic_path_removes_the_temporary_file_on_error(tmp_path: Path) -> None:
    target = tmp_path / "table.xlsx"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("writer failed")
    assert list(tmp_path.iterdir()) == []


def test_atomic_json_and_hash(tmp_path: Path) -> None:
    path = atomic_write_json(tmp_path / "a" / "b.json", {"x": 1})
    assert path.read_text() == '{\n  "x": 1\n}\n'
    assert len(sha256_file(path)) == 64
