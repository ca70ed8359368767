"""Stopping a tool that writes bags cleanly: SIGINT and SIGTERM ask it to finish after the frame in hand.

Python's default turns SIGINT into a KeyboardInterrupt anywhere (inside a network call, inside
the bag writer) and lets SIGTERM kill the process outright, leaving a hidden
``.<bag>.partial-*`` folder behind. Inside :class:`StopRequest` both only set a flag that the
tool's loop reads between frames: it stops reading, finishes its output bag and report with
what was done, and exits with the conventional code (130 for SIGINT, 143 for SIGTERM). A
second signal does not wait: it raises KeyboardInterrupt, and the writer then removes its
temporary folder, so nothing is left behind either way.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType
from typing import Any

#: The signals a tool stops on.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequest:
    """Context manager: while inside, SIGINT/SIGTERM set :attr:`signum` instead of interrupting (see the module)."""

    def __init__(self, deferred: bool = True) -> None:
        self.signum: int | None = None
        #: False while nothing is written yet (rendering, loading): a signal then raises KeyboardInterrupt at once.
        self.deferred = deferred
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():  # handlers can only be set there
            for signum in STOP_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        again = self.signum is not None
        self.signum = self.signum or signum
        if again or not self.deferred:
            raise KeyboardInterrupt  # asked twice, or nothing to finish: stop now (the writer removes its folder)

    @property
    def requested(self) -> bool:
        """Whether a stop signal arrived."""
        return self.signum is not None

    @property
    def name(self) -> str:
        """The signal's name (SIGINT, SIGTERM), or '' when none arrived."""
        return signal.Signals(self.signum).name if self.signum is not None else ""

    @property
    def exit_code(self) -> int:
        """The shell's code for a process ended by the signal: 128 + its number (130 SIGINT, 143 SIGTERM)."""
        return 128 + self.signum if self.signum is not None else 0
