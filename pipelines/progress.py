"""One progress protocol for every long step.

Engines call a :data:`ProgressCallback` with :class:`Progress` events and never print. The CLI
renders them as a progress bar, the job worker writes them into the job status, the app shows
them. A callback may raise :class:`~pipelines.errors.Cancelled` to stop the work between steps.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Progress:
    """One progress event.

    ``done``/``total`` count steps of the current ``stage`` (``total`` 0 means unknown);
    ``metrics`` holds the latest numbers worth showing (e.g. ``{"loss": 0.12}``).
    """

    stage: str
    done: int
    total: int
    metrics: dict[str, float] = field(default_factory=dict)
    eta_s: float | None = None
    message: str = ""

    @property
    def fraction(self) -> float:
        """Share of the stage done, in [0, 1]; 0 when the total is unknown."""
        if self.total <= 0:
            return 0.0
        return min(1.0, max(0.0, self.done / self.total))


ProgressCallback = Callable[[Progress], None]


def ignore_progress(_: Progress) -> None:
    """Default callback: drop events."""


class StageTimer:
    """Emit :class:`Progress` for one stage with an ETA from the mean step time so far.

    ``min_interval_s`` throttles events so a fast loop does not flood a job status store;
    the first and last steps are always reported.
    """

    def __init__(
        self,
        callback: ProgressCallback | None,
        stage: str,
        total: int,
        min_interval_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.callback = callback or ignore_progress
        self.stage = stage
        self.total = total
        self.min_interval_s = min_interval_s
        self.clock = clock
        self.started = clock()
        self._last_emit = -math.inf

    def update(self, done: int, message: str = "", **metrics: float) -> None:
        """Report ``done`` steps finished, with optional metrics."""
        now = self.clock()
        last_step = self.total > 0 and done >= self.total
        if done > 0 and not last_step and now - self._last_emit < self.min_interval_s:
            return
        self._last_emit = now
        eta = None
        if self.total > 0 and done > 0:
            eta = (now - self.started) / done * max(0, self.total - done)
        self.callback(
            Progress(
                stage=self.stage,
                done=done,
                total=self.total,
                metrics={k: float(v) for k, v in metrics.items()},
                eta_s=eta,
                message=message,
            )
        )
