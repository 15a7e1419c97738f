"""A RUNNING run whose heartbeat went stale lost its process: pure rule, and a real SIGKILLed trainer."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from mlflow.tracking import MlflowClient

from paramdoctor.liveness import TAG_HEARTBEAT, TAG_HEARTBEAT_EVERY, is_interrupted, stale_after_s

ROOT = Path(__file__).resolve().parents[2]
NOW = 1_700_000_000.0


def beat(age_s: float, every: str | None = "30") -> dict[str, str]:
    tags = {TAG_HEARTBEAT: str(int(NOW - age_s))}
    if every is not None:
        tags[TAG_HEARTBEAT_EVERY] = every
    return tags


def test_stale_after_three_missed_beats_and_never_less_than_90_s():
    assert stale_after_s(30) == 90 and stale_after_s(5) == 90 and stale_after_s(60) == 180


def test_is_interrupted():
    assert not is_interrupted("RUNNING", beat(60), NOW)
    assert is_interrupted("RUNNING", beat(91), NOW)
    assert not is_interrupted("RUNNING", beat(150, every="60"), NOW)  # 3 x 60 s not yet passed
    assert is_interrupted("RUNNING", beat(181, every="60"), NOW)
    assert is_interrupted("RUNNING", beat(91, every=None), NOW)  # no interval: 30 s assumed
    assert is_interrupted("RUNNING", beat(91, every="garbage"), NOW)
    for status in ("FINISHED", "FAILED", "KILLED"):
        assert not is_interrupted(status, beat(10_000), NOW)  # ended runs ended
    assert not is_interrupted("RUNNING", {}, NOW)  # no heartbeat (another tool's run): nothing says it died
    assert not is_interrupted("RUNNING", {TAG_HEARTBEAT: "not a number"}, NOW)


SCRIPT = textwrap.dedent(
    """
    import sys, time
    from paramdoctor.tracking import start_run

    with start_run(experiment="killed", tracking_uri=sys.argv[1], heartbeat_every_s=0.2, flush_every_s=0.2) as run:
        print(run.run_id, flush=True)
        step = 0
        while True:
            step += 1
            run.sink.log("step/loss", 1.0, step)
            time.sleep(0.01)
    """
)


def test_a_sigkilled_trainer_is_recognised_by_its_stale_heartbeat(migrated_store_uri, tmp_path):
    script = tmp_path / "trainer.py"
    script.write_text(SCRIPT)
    proc = subprocess.Popen(
        [sys.executable, str(script), migrated_store_uri],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    run_id = proc.stdout.readline().strip()
    assert run_id, proc.communicate(timeout=30)[1][-2000:]
    client = MlflowClient(tracking_uri=migrated_store_uri)
    first = int(client.get_run(run_id).data.tags[TAG_HEARTBEAT])
    deadline = time.monotonic() + 20
    while int(client.get_run(run_id).data.tags[TAG_HEARTBEAT]) == first and time.monotonic() < deadline:
        time.sleep(0.2)  # the background thread renews it
    run = client.get_run(run_id)
    last = int(run.data.tags[TAG_HEARTBEAT])
    assert last > first and run.data.tags[TAG_HEARTBEAT_EVERY] == "0.2"
    assert not is_interrupted(run.info.status, run.data.tags, time.time())  # alive

    proc.send_signal(signal.SIGKILL)  # no chance to write a status
    proc.communicate(timeout=30)
    run = client.get_run(run_id)
    assert run.info.status == "RUNNING"  # what MLflow shows forever
    beat_at = int(run.data.tags[TAG_HEARTBEAT])
    assert not is_interrupted(run.info.status, run.data.tags, beat_at + 60)
    assert is_interrupted(run.info.status, run.data.tags, beat_at + 91)
