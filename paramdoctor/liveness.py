"""Whether a RUNNING run is alive: the trainer's heartbeat.

A process killed with SIGKILL, or a machine that reboots, cannot mark its
MLflow run as ended: the run stays RUNNING for ever. So the trainer writes
the tag ``paramdoctor.heartbeat`` (unix seconds) at least every
``paramdoctor.heartbeat_every_s`` seconds. A RUNNING run whose heartbeat is
older than three intervals (and at least :data:`MIN_SILENCE_S`) died: the
doctor says so and prints the resume command instead of judging half a run.

On the machine that trained the run there is an exact answer too: the
trainer holds an exclusive ``flock`` on ``<checkpoint dir>/.lock`` while it
lives, and the kernel releases it when the process dies, even by SIGKILL
(:func:`trainer_gone`).

Runs without a heartbeat (made by other tools, or by an older paramdoctor)
are never called interrupted: nothing says they should have one.

Nothing here imports MLflow: any reader of tags can use it.
"""

from __future__ import annotations

import fcntl
import math
import os
from pathlib import Path

from paramdoctor import keys

MISSED_BEATS = 3
MIN_SILENCE_S = 90.0  # never less, so a slow store or a suspended machine is not taken for a death
DEFAULT_HEARTBEAT_EVERY_S = 30.0
TAG_HEARTBEAT, TAG_HEARTBEAT_EVERY = keys.TAG_HEARTBEAT, keys.TAG_HEARTBEAT_EVERY


def stale_after_s(heartbeat_every_s: float) -> float:
    """Seconds without a heartbeat after which a RUNNING run is taken for dead."""
    return max(MISSED_BEATS * heartbeat_every_s, MIN_SILENCE_S)


def _number(value: object) -> float | None:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def silence_s(tags: dict[str, str], now: float) -> float | None:
    """Seconds since the latest heartbeat; None when the run never wrote one."""
    beat = _number(tags.get(keys.TAG_HEARTBEAT))
    return None if beat is None else max(0.0, now - beat)


def allowed_silence_s(tags: dict[str, str]) -> float:
    every = _number(tags.get(keys.TAG_HEARTBEAT_EVERY))
    return stale_after_s(every if every is not None and every > 0 else DEFAULT_HEARTBEAT_EVERY_S)


def trainer_gone(tags: dict[str, str]) -> bool | None:
    """Whether the run's trainer process is gone, judged by its lock on this machine; None when it cannot be told here."""
    directory = tags.get(keys.TAG_CHECKPOINT_DIR)
    if not directory:
        return None
    lock = Path(directory) / ".lock"
    try:
        fd = os.open(lock, os.O_RDONLY)
    except OSError:
        return None  # trained elsewhere, or before its first checkpoint
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError:
        return None
    finally:
        os.close(fd)
    return True


def is_interrupted(status: str, tags: dict[str, str], now: float) -> bool:
    """True for a RUNNING run whose trainer died without closing it: its lock is free here, or its heartbeat stopped."""
    if status != "RUNNING":
        return False
    gone = trainer_gone(tags)
    if gone is not None:
        return gone
    silent = silence_s(tags, now)
    return silent is not None and silent > allowed_silence_s(tags)


def interruption(status: str, tags: dict[str, str], now: float, run_id: str | None) -> str | None:
    """One sentence saying the run died and how to carry it on; None when it did not."""
    if not is_interrupted(status, tags, now):
        return None
    silent = silence_s(tags, now)
    resume = f"paramdoctor train --resume {run_id}" if run_id else "paramdoctor train --resume RUN_ID"
    if silent is None or silent <= allowed_silence_s(tags):
        seen = "its trainer process is gone (its lock on this machine is free)"
    else:
        ago = f"{silent / 60:.0f} min" if silent < 7200 else f"{silent / 3600:.1f} h"
        seen = f"its trainer stopped sending a heartbeat {ago} ago"
    return (
        f"the run is RUNNING but {seen}: the process died (kill -9, out of memory, a reboot) "
        f"without closing the run; carry it on with: {resume}"
    )
