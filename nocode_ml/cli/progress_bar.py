"""Render :class:`pipelines.progress.Progress` events as a one-line terminal progress bar."""

from __future__ import annotations

import sys
from typing import TextIO

from pipelines.progress import Progress


def format_seconds(seconds: float | None) -> str:
    """``75.2`` -> ``'1:15'``; ``None`` -> ``'?'``."""
    if seconds is None:
        return "?"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class TerminalProgress:
    """Callable progress callback drawing ``stage [#####.....] 12/40 ETA 0:31 loss=0.12``."""

    def __init__(self, stream: TextIO | None = None, width: int = 28) -> None:
        self.stream = stream or sys.stderr
        self.width = width
        self._stage: str | None = None
        self._interactive = bool(getattr(self.stream, "isatty", lambda: False)())

    def __call__(self, event: Progress) -> None:
        if self._stage is not None and event.stage != self._stage:
            self.stream.write("\n")
        self._stage = event.stage
        filled = round(self.width * event.fraction)
        bar = "#" * filled + "." * (self.width - filled)
        count = f"{event.done}/{event.total}" if event.total else f"{event.done}"
        metrics = " ".join(f"{key}={value:.4g}" for key, value in event.metrics.items())
        line = f"{event.stage:<10} [{bar}] {count} ETA {format_seconds(event.eta_s)} {metrics}"
        if event.message:
            line += f" {event.message}"
        if self._interactive:
            self.stream.write("\r" + line.ljust(100))
        elif (
            event.total <= 0
            or event.done in (0, event.total)
            or filled != getattr(self, "_last_filled", -1)
        ):
            self.stream.write(line + "\n")
        self._last_filled = filled
        self.stream.flush()

    def close(self) -> None:
        """End the current line."""
        if self._stage is not None and self._interactive:
            self.stream.write("\n")
            self.stream.flush()
