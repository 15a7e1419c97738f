"""Closing a run cannot be cut short: Ctrl-C and SIGTERM wait until the status is written."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from paramdoctor.tracking.uninterruptible import deferred_signals

ROOT = Path(__file__).resolve().parents[2]


def test_a_signal_in_the_block_is_raised_after_it():
    finished = False
    with pytest.raises(KeyboardInterrupt):
        with deferred_signals() as received:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)  # a handler would have run by now
            finished = True
            assert received == [signal.SIGINT]
    assert finished
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handlers put back


def test_sigterm_goes_to_the_handler_that_was_there_before():
    calls = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: calls.append(signum))
    try:
        with deferred_signals():
            os.kill(os.getpid(), signal.SIGTERM)
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)
            assert calls == []
        assert calls == [signal.SIGTERM]  # once: two stops mean stop
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_the_third_signal_is_not_held_back():
    reached = []
    with pytest.raises(KeyboardInterrupt):
        with deferred_signals():
            for _ in range(3):
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.02)
                reached.append(True)
    assert len(reached) == 2  # the third one interrupted the block
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_off_the_main_thread_it_changes_nothing():
    seen = []

    def work():
        with deferred_signals() as received:
            seen.append((received, signal.getsignal(signal.SIGINT)))

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    assert seen == [([], signal.default_int_handler)]


SCRIPT = textwrap.dedent(
    """
    import sys, time
    from mlflow.tracking import MlflowClient
    from paramdoctor.tracking import start_run

    class SlowStore(MlflowClient):
        # a store that takes half a second per batch: closing the run takes a while
        def log_batch(self, run_id, metrics=(), params=(), tags=(), synchronous=None):
            if metrics:
                time.sleep(0.5)
            return super().log_batch(run_id, metrics=metrics, params=params, tags=tags, synchronous=synchronous)

    with start_run(experiment="closing", client=SlowStore(tracking_uri=sys.argv[1]), flush_every_s=3600) as run:
        for step in range(1, 101):
            run.sink.log("step/loss", 1.0 / step, step)
        print(run.run_id, flush=True)
        while True:
            time.sleep(0.01)
    """
)


def test_two_ctrl_c_35_ms_apart_while_closing_leave_the_run_killed(migrated_store_uri, tmp_path):
    script = tmp_path / "closing.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, str(script), migrated_store_uri],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    run_id = proc.stdout.readline().strip()
    assert run_id, proc.communicate(timeout=30)[1][-2000:]
    proc.send_signal(signal.SIGINT)  # Ctrl-C: the run starts closing, flushing 100 metrics to a slow store
    time.sleep(0.035)
    proc.send_signal(signal.SIGINT)  # and again, while it closes
    _, err = proc.communicate(timeout=60)
    assert proc.returncode in (-signal.SIGINT, 130, 1), err[-2000:]  # stopped by the Ctrl-C, after closing
    assert "KeyboardInterrupt" in err
    client = MlflowClient(tracking_uri=migrated_store_uri)
    run = client.get_run(run_id)
    assert run.info.status == "KILLED", err[-2000:]
    assert len(client.get_metric_history(run_id, "step/loss")) == 100
