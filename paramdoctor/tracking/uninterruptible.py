"""Deferring Ctrl-C and SIGTERM while a run is being closed.

Closing a run is a few short writes (the last metrics, the failure reason,
the status). A second Ctrl-C that lands in the middle of them, a person
pressing it twice or a scheduler sending SIGTERM after SIGINT, used to leave
the run RUNNING forever while the command said KILLED. Inside
:func:`deferred_signals` SIGINT and SIGTERM are only remembered; when the
block ends, the previous handlers are put back and each remembered signal is
handed to them, so Python's default SIGINT handler raises
``KeyboardInterrupt`` after the status is written.

Holding back has a limit: the third signal inside the block (a person
pressing Ctrl-C again and again because closing hangs on a dead server) is
delivered at once, so nobody is ever locked in. A run abandoned that way is
left RUNNING and its heartbeat goes stale (``liveness``).

Signal handlers can only be set from the main thread; elsewhere the block
runs unprotected (a run closed from a worker thread gets no signals anyway:
Python delivers them to the main thread).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

DEFERRED_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def deferred_signals(
    signals: tuple[int, ...] = DEFERRED_SIGNALS, *, give_up_after: int | None = 3, notice: str | None = None
) -> Iterator[list[int]]:
    """Run the block with ``signals`` held back; yields the list of those received so far.

    After the block, every held signal goes to the handler that was in place
    before (for SIGINT usually ``KeyboardInterrupt``), once per kind. A
    signal whose previous handler is the system default is re-sent to this
    process, so the default action (ending it) still happens. The
    ``give_up_after``-th signal is delivered at once, inside the block.
    ``notice``: one line written to stderr when the first signal is held.
    """
    if threading.current_thread() is not threading.main_thread():
        yield []
        return
    received: list[int] = []
    previous: dict = {}

    def restore() -> None:
        for signum, handler in previous.items():
            signal.signal(signum, handler)

    def hold(signum, frame) -> None:
        received.append(signum)
        if give_up_after is not None and len(received) >= give_up_after:
            restore()
            received.clear()  # delivered here, not again after the block
            _deliver([signum], previous)
            return
        if notice and len(received) == 1:
            try:
                sys.stderr.write(notice.rstrip("\n") + "\n")
                sys.stderr.flush()
            except (OSError, ValueError):
                pass

    try:
        for signum in signals:
            previous[signum] = signal.signal(signum, hold)
        yield received
    finally:
        restore()
        _deliver(received, previous)


def _deliver(received: list[int], previous: dict) -> None:
    for signum in dict.fromkeys(received):  # once per kind: two Ctrl-C mean "stop", not "stop twice"
        handler = previous.get(signum)
        if callable(handler):
            handler(signum, None)  # raises KeyboardInterrupt for SIGINT (default_int_handler)
        elif handler == signal.SIG_DFL:
            os.kill(os.getpid(), signum)
        # SIG_IGN, or a handler not set from Python (None): nothing to do
