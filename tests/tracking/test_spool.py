"""The spool on disk: append-only, read back in order, delivered once, bounded; against a real SQLite store."""

from __future__ import annotations

import json
import math

import pytest
from mlflow.tracking import MlflowClient

from paramdoctor.tracking.spool import (
    DEFAULT_MAX_BYTES,
    ENV_SPOOL_DIR,
    Spool,
    SpoolCorrupt,
    deliver,
    resolve_spool_dir,
    send_op,
)


def new_run(client: MlflowClient) -> str:
    return client.create_run(client.create_experiment("spool-tests")).info.run_id


def history(client: MlflowClient, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def test_spool_dir_is_argument_then_environment_then_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(ENV_SPOOL_DIR, raising=False)
    assert resolve_spool_dir() == tmp_path / ".paramdoctor" / "spool"
    monkeypatch.setenv(ENV_SPOOL_DIR, "elsewhere")
    assert resolve_spool_dir() == tmp_path / "elsewhere"
    assert resolve_spool_dir(tmp_path / "given") == tmp_path / "given"
    assert DEFAULT_MAX_BYTES == 256 * 2**20


def test_operations_survive_a_restart_in_order_and_the_file_goes_when_all_are_done(tmp_path):
    spool = Spool(tmp_path, "r1", tracking_uri="http://tracking:5000")
    assert not spool.path.exists()  # nothing written: no file
    spool.append_metrics([("step/loss", 1.0, 1000, 1), ("val/acc", float("nan"), 1000, 1)])
    spool.append({"op": "tags", "tags": {"a": "1"}})
    spool.append({"op": "terminate", "status": "FINISHED", "end_time": 2000})
    spool.mark_done(1)
    spool.release()  # the process ends (or dies: every line was fsync'ed)

    again = Spool(tmp_path, "r1")
    assert again.acquire()
    assert again.tracking_uri == "http://tracking:5000"
    assert [op["op"] for _, op in again.operations()] == ["tags", "terminate"]
    assert again.pending == 2 and again.points == 0
    seq = again.append({"op": "tags", "tags": {"b": "2"}})
    assert seq == 4  # numbering goes on after what the file holds
    for seq, _ in list(again.operations()):
        again.mark_done(seq)
    assert not again.path.exists() and again.pending == 0
    again.release()
    assert not again.lock_path.exists()


def test_nan_and_inf_round_trip(tmp_path):
    spool = Spool(tmp_path, "r1")
    spool.append_metrics([("a", float("nan"), 1, 1), ("b", float("inf"), 1, 1), ("c", -float("inf"), 1, 1)])
    spool.release()
    again = Spool(tmp_path, "r1")
    again.acquire()
    (a, b, c) = again.records()
    assert math.isnan(a[1]) and b[1] == math.inf and c[1] == -math.inf


def test_a_line_torn_by_a_crash_is_cut_off(tmp_path):
    spool = Spool(tmp_path, "r1")
    spool.append_metrics([("step/loss", 1.0, 1, 1)])
    spool.release()
    with open(spool.path, "ab") as fh:
        fh.write(b'{"seq": 2, "op": "metr')  # the process died in the middle of a write
    again = Spool(tmp_path, "r1")
    again.acquire()
    assert again.records() == [("step/loss", 1.0, 1, 1)]
    again.append_metrics([("step/loss", 0.5, 2, 2)])
    again.release()
    lines = spool.path.read_text().splitlines()
    assert [json.loads(line).get("seq") for line in lines[1:]] == [1, 2]


def test_a_damaged_file_is_a_one_line_error(tmp_path):
    (tmp_path / "r1.jsonl").write_text('{"paramdoctor_spool": 1, "run_id": "r1"}\nnot json\n{"seq": 2}\n')
    with pytest.raises(SpoolCorrupt, match="line 2 is not JSON") as info:
        Spool(tmp_path, "r1").acquire()
    assert "\n" not in str(info.value)
    (tmp_path / "r2.jsonl").write_text('{"something": "else"}\n')
    with pytest.raises(SpoolCorrupt, match="is not a paramdoctor spool"):
        Spool(tmp_path, "r2").acquire()


def test_one_process_at_a_time(tmp_path):
    first = Spool(tmp_path, "r1")
    first.append({"op": "tags", "tags": {"a": "1"}})
    second = Spool(tmp_path, "r1")
    assert not second.acquire(blocking=False)  # flock: held by the first
    first.release()
    assert second.acquire(blocking=False) and second.pending == 1
    second.release()


def test_delivery_in_order_and_an_operation_sent_twice_is_stored_once(mlflow_store, tmp_path):
    client = MlflowClient(tracking_uri=mlflow_store)
    run_id = new_run(client)
    spool = Spool(tmp_path, run_id)
    spool.append_metrics([("step/loss", 1.0 / s, 1_000 + s, s) for s in range(1, 1501)])  # two batches of MLflow's 1000
    spool.append({"op": "tags", "tags": {"paramdoctor.stop_reason": "max_epochs"}})
    spool.append({"op": "params", "params": {"optimizer.lr": "0.001"}})
    spool.append({"op": "terminate", "status": "FINISHED", "end_time": 5_000})
    # a crash between a send and its "done" line: the first operation is sent, not marked
    seq, op = spool.peek()
    send_op(client, run_id, op)
    spool.release()

    again = Spool(tmp_path, run_id)
    again.acquire()
    assert again.pending == 4
    result = deliver(again, client)
    assert result.operations == 4 and result.points == 1500 and result.remaining == 0 and result.error is None
    losses = client.get_metric_history(run_id, "step/loss")
    assert len(losses) == 1500 and sorted(m.step for m in losses) == list(range(1, 1501))  # each point once
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.info.end_time == 5_000
    assert run.data.tags["paramdoctor.stop_reason"] == "max_epochs" and run.data.params["optimizer.lr"] == "0.001"
    assert not again.path.exists()
    again.release()


def test_a_refused_write_is_reported_and_does_not_block_the_rest(mlflow_store, tmp_path):
    client = MlflowClient(tracking_uri=mlflow_store)
    run_id = new_run(client)
    spool = Spool(tmp_path, run_id)
    spool.append_metrics([("step/loss", 1.0, 1, 1), ("bad key!", 1.0, 1, 1), ("step/loss", 0.5, 2, 2)])
    spool.append({"op": "terminate", "status": "FINISHED", "end_time": 5_000})
    result = deliver(spool, client)
    assert result.remaining == 0 and result.rejected_points == 1 and "bad key!" in result.rejected[0]
    assert history(client, run_id, "step/loss") == [(1, 1.0), (2, 0.5)]
    assert client.get_run(run_id).info.status == "FINISHED"


def test_a_run_the_server_does_not_have_keeps_its_spool(mlflow_store, tmp_path):
    client = MlflowClient(tracking_uri=mlflow_store)
    run_id = new_run(client)
    client.delete_run(run_id)
    spool = Spool(tmp_path, run_id)
    spool.append_metrics([("step/loss", 1.0, 1, 1)])
    result = deliver(spool, client)
    assert result.refused and result.remaining == 1 and "deleted" in result.error
    assert spool.path.exists()


def test_artifacts_are_copied_so_the_original_may_go(mlflow_store, tmp_path):
    client = MlflowClient(tracking_uri=mlflow_store)
    run_id = new_run(client)
    original = tmp_path / "best.pt"
    original.write_bytes(b"weights")
    spool = Spool(tmp_path / "spool", run_id)
    spool.append_artifact(original, "checkpoints")
    spool.append({"op": "text", "text": "# report", "artifact_file": "diagnosis.md"})
    original.unlink()  # a temporary directory of the trainer, gone by the time the server is back
    result = deliver(spool, client)
    assert result.remaining == 0
    assert {f.path for f in client.list_artifacts(run_id, "checkpoints")} == {"checkpoints/best.pt"}
    assert open(client.download_artifacts(run_id, "checkpoints/best.pt", str(tmp_path)), "rb").read() == b"weights"
    assert not spool.files_dir.exists()


def test_the_bound_drops_the_oldest_step_points_and_never_epoch_metrics(tmp_path):
    drops = []
    spool = Spool(tmp_path, "r1", max_bytes=40_000, on_drop=lambda now, total: drops.append((now, total)))
    for batch in range(20):  # 20 batches of 200 step points + 1 epoch metric: ~110 kB, over the bound
        records = [("step/loss", 0.1, 1000 + batch, batch * 200 + i) for i in range(200)]
        records += [("telemetry/head/drift", 0.2, 1000 + batch, batch * 200)]
        records += [("val/acc", 0.5, 1000 + batch, batch + 1)]
        spool.append_metrics(records)
        spool.append({"op": "tags", "tags": {"batch": str(batch)}})
    assert spool.path.stat().st_size <= 40_000
    assert drops and spool.dropped == drops[-1][1] > 0
    kept = spool.records()
    assert sorted(r[3] for r in kept if r[0] == "val/acc") == list(range(1, 21))  # every epoch metric
    steps = sorted(r[3] for r in kept if r[0] == "step/loss")
    assert steps == list(range(steps[0], 4000)) and steps[0] > 0  # the newest step points, the oldest dropped
    assert len([op for _, op in spool.operations() if op["op"] == "tags"]) == 20  # tags are never dropped
    spool.release()
    again = Spool(tmp_path, "r1")
    again.acquire()
    assert again.records() == kept  # the rewritten file reads back the same


class LinkWatchingClient(MlflowClient):
    """A real client that notes whether MLflow's run-link printing is switched off while the status is set."""

    switch_seen: list[str | None] = []

    def set_terminated(self, *args, **kwargs):
        import os

        self.switch_seen.append(os.environ.get("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"))
        return super().set_terminated(*args, **kwargs)


@pytest.mark.parametrize("user_setting", [None, "false"])
def test_the_status_goes_through_the_client_without_mlflows_run_links_on_stdout(mlflow_store, monkeypatch, user_setting):
    """On a tracking server MLflow prints '🏃 View run ...' to stdout at every set_terminated: it broke `tune --json`."""
    import os

    if user_setting is None:
        monkeypatch.delenv("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", raising=False)
    else:
        monkeypatch.setenv("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", user_setting)
    client = LinkWatchingClient(tracking_uri=mlflow_store)
    client.switch_seen = []
    run_id = new_run(client)
    send_op(client, run_id, {"op": "terminate", "status": "KILLED", "end_time": 1234})
    info = client.get_run(run_id).info
    assert (info.status, info.end_time) == ("KILLED", 1234)
    assert client.switch_seen == ["true" if user_setting is None else user_setting]  # a user's own choice stands
    assert os.environ.get("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT") == user_setting  # and nothing is left behind
