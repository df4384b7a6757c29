"""The one error a pipeline step raises when it cannot do its job."""

from __future__ import annotations


class StepError(RuntimeError):
    """A step could not produce its outputs; the message says why, for a person to act on."""

    def __init__(self, step: str, message: str) -> None:
        self.step = step
        self.reason = message
        super().__init__(f"{step}: {message}")
