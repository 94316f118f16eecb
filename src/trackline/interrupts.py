"""Stop signals as exceptions: SIGINT and SIGTERM raise `Interrupted` in the main thread.

Python's default SIGTERM ends the process at once (no `finally`, no rollback, no run row);
turned into an exception, the work unwinds like a Ctrl-C: the open warehouse transaction is
rolled back, what was committed stays (G3), and the run records itself as ``interrupted``
before the process exits with 128 + the signal number.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

from trackline.errors import Interrupted

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _raise(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(f"received {signal.Signals(signum).name}", 128 + signum)


@contextlib.contextmanager
def interrupt_on_signals() -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM raise `Interrupted` (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {s: signal.signal(s, _raise) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
