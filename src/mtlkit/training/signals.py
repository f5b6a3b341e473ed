"""SIGINT and SIGTERM ask a run to stop at the next step boundary, after a checkpoint.

:class:`StopSignals` installs handlers for the duration of a ``with`` block (main thread only);
a first signal only sets a flag that the training loop reads between steps, a second SIGINT
interrupts at once (Python's ``KeyboardInterrupt``), without a checkpoint.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType
from typing import Any

__all__ = ["StopSignals", "TrainingInterrupted"]

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class TrainingInterrupted(Exception):
    """Training stopped on a signal after writing a checkpoint.

    Attributes:
        signum: the signal received (``signal.SIGINT`` or ``signal.SIGTERM``).
    """

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum

    def __reduce__(self) -> tuple[type[TrainingInterrupted], tuple[str, int]]:
        """Pickled with its signal (a worker process sends it to its parent)."""
        return type(self), (str(self), self.signum)

    @property
    def exit_code(self) -> int:
        """The shell's convention for a process ended by a signal: 128 + the signal number
        (130 for SIGINT, 143 for SIGTERM)."""
        return 128 + self.signum


class StopSignals:
    """A context manager catching SIGINT and SIGTERM as a request to stop.

    ``received`` is the first signal caught (``None`` before any). Outside the main thread no
    handler can be installed and nothing is caught.
    """

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for signum in _SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received is None:
            self.received = signum
        signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl-C: at once

    def requested(self) -> bool:
        """Whether a signal asked the run to stop."""
        return self.received is not None
