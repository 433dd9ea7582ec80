"""The time budget of a training process: an epoch starts only when the estimate from the last one
fits in the time left (the first epoch of a process always runs); a run stopped so is paused and
resumes exactly.
"""
from __future__ import annotations

import math
import time

__all__ = ["clock", "Budget"]


def clock() -> float:
    """Seconds on a monotonic clock: epoch times and the time budget (tests replace it)."""
    return time.perf_counter()


class Budget:
    """The time budget of this process: ``seconds`` (0: none) from its creation on.

    ``stop_before(estimate, ...)``: why the next epoch, expected to take ``estimate`` seconds
    (None: unknown, the pack has not run one in this process), must not start (None: it
    may). The process's first epoch always starts (``epochs`` counts the epochs run under
    this budget); a later pack's first epoch starts while any time is left."""

    def __init__(self, seconds: float = 0.0) -> None:
        self.seconds = float(seconds)
        self.deadline = clock() + self.seconds if self.seconds > 0 else None
        self.epochs = 0
        self.first_epoch_s: float | None = None
        self.startup_s = 0.0  # from the budget's start to the first epoch's: data, model, capture

    def left(self) -> float:
        return math.inf if self.deadline is None else self.deadline - clock()

    def ran_epoch(self, seconds: float) -> None:
        self.epochs += 1
        if self.first_epoch_s is None:
            self.first_epoch_s = seconds
            if self.deadline is not None:
                self.startup_s = max(clock() - seconds - (self.deadline - self.seconds), 0.0)

    def stop_before(self, estimate: float | None, epoch: int, n_epochs: int) -> str | None:
        left = self.left()
        if self.deadline is None or self.epochs == 0 or (estimate or 0.0) <= left:
            return None
        resume = f"last.pth holds epoch {epoch}" if epoch else "nothing was trained yet"
        if estimate is None:
            return (f"paused by the time budget before its first epoch in this process: the {self.seconds:g} s "
                    f"were spent ({max(left, 0):.1f} s left); {resume}: rerun the same command to resume")
        if self.epochs == 1 and self.first_epoch_s is not None and self.startup_s + self.first_epoch_s > self.seconds:
            x, y = self.startup_s, self.first_epoch_s
            return (f"the time budget ({self.seconds:g} s) is shorter than start-up ({x:.1f} s) and one epoch "
                    f"({y:.1f} s): paused after epoch {epoch} "
                    f"of {n_epochs}; {resume}, nothing is lost. Rerun the same command to resume (one epoch per "
                    f"command at this budget), or give a larger --time-budget (e.g. {math.ceil(x + 2 * y) + 1} s "
                    f"for two epochs per command, start-up included; 0 = no limit)")
        return (f"paused by the time budget after epoch {epoch} of {n_epochs}: the next epoch (~{estimate:.1f} s) "
                f"does not fit in the {max(left, 0):.1f} s left of {self.seconds:g} s; {resume}: rerun the "
                f"same command to resume")
