"""``torchrun --nproc-per-node=2 -m paramdoctor train``: DDP on CPUs (gloo), one MLflow run per job.

Real jobs: torchrun starts two processes that train digits with
DistributedDataParallel, next to a plain single process on the same config.
The job's batch is split over the ranks and the sums behind every metric are
added over them, so the two must log the same curves; BatchNorm runs on its
running statistics here (``model.batchnorm_eval``) so that no per-rank batch
statistic separates them. A second job is stopped in its second epoch and
carried on with ``torchrun ... train --resume``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import pytest
from mlflow import MlflowClient

from paramdoctor import keys
from paramdoctor.cli.app import main
from paramdoctor.config import load_config
from paramdoctor.training import distributed, fit

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
EXPERIMENT = "ddp"
# early stopping that must fire after epoch 2: only a fall of val/loss by 1.0 counts as better
CONFIG = [
    "data.subset=300",
    "data.batch_size=32",
    "trainer.accumulate_grad_batches=2",  # DDP syncs once per update (no_sync on the first micro-batch)
    "model.batchnorm_eval=true",
    "trainer.max_epochs=4",
    "trainer.flush_every_s=0.2",
    "early_stopping.patience=1",
    "early_stopping.min_delta=1.0",
    f"experiment.name={EXPERIMENT}",
]
CURVES = ("train/loss", "train/acc", "val/loss", "val/acc", "step/loss", "step/grad_norm")
TIMEOUT_S = 300

STOP_IN_EPOCH_2 = textwrap.dedent(
    """
    import sys
    from paramdoctor.config import load_config
    from paramdoctor.training import distributed, fit

    class StopInEpoch2:  # Ctrl-C on every rank after the first update of epoch 2
        def on_fit_start(self, **_): pass
        def on_epoch_end(self, **_): pass
        def on_step(self, *, epoch, step_in_epoch, **_):
            if (epoch, step_in_epoch) == (2, 1):
                raise KeyboardInterrupt

    with distributed.joined():
        try:
            fit(load_config(None, sys.argv[1:]), listener=StopInEpoch2())
        except KeyboardInterrupt:
            sys.exit(130)
    """
)


FROM_MAIN = textwrap.dedent(
    """
    from paramdoctor.errors import InputError
    from paramdoctor.training import distributed

    def lookup(found):
        def on_rank_0():
            if not found:
                raise InputError("--resume nope: no such run")
            return {"run_id": "abc", "epoch": 3}
        return on_rank_0

    with distributed.joined() as world:
        assert world.is_distributed and world.size == 2
        print(f"rank {world.rank}: found {world.from_main(lookup(True))}", flush=True)
        try:
            world.from_main(lookup(False))
        except InputError as exc:
            print(f"rank {world.rank}: InputError: {exc}", flush=True)
        world.barrier()  # both ranks are still in step after the error
    """
)


def torchrun(*args: str, nproc: int = 2) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc-per-node=N ARGS`` (torch's launcher module, in this interpreter)."""
    return subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def _runs(client: MlflowClient) -> dict[str, object]:
    experiment = client.get_experiment_by_name(EXPERIMENT)
    return {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}


def _curves(client: MlflowClient, run_id: str) -> dict[str, list[tuple[int, float]]]:
    return {key: sorted((m.step, m.value) for m in client.get_metric_history(run_id, key)) for key in CURVES}


@pytest.fixture(scope="module")
def jobs(module_store, tmp_path_factory):
    """Three trainings of CONFIG: a 2-process job, a single process, a 2-process job stopped and resumed."""
    two = torchrun("-m", "paramdoctor", "train", *CONFIG, "experiment.run_name=two-ranks", "-q")
    assert two.returncode == 0, two.stdout[-2000:] + two.stderr[-3000:]

    single = fit(load_config(None, [*CONFIG, "experiment.run_name=single"]))

    script = tmp_path_factory.mktemp("ddp") / "stop_in_epoch_2.py"
    script.write_text(STOP_IN_EPOCH_2)
    stopped = torchrun(str(script), *CONFIG, "experiment.run_name=resumed")
    assert stopped.returncode != 0  # both ranks left by Ctrl-C
    run_id = _runs(module_store)["resumed"].info.run_id
    assert module_store.get_run(run_id).info.status == "KILLED"
    resumed = torchrun("-m", "paramdoctor", "train", "--resume", run_id, "-q")
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-3000:]
    return {"two": two, "single": single, "resumed": resumed, "client": module_store}


def test_a_two_process_job_is_one_mlflow_run_written_by_rank_0(jobs):
    client = jobs["client"]
    runs = _runs(client)
    assert sorted(runs) == ["resumed", "single", "two-ranks"]  # one run per job, whatever its process count
    run = runs["two-ranks"]
    assert run.info.status == "FINISHED"
    assert run.data.tags[keys.TAG_WORLD_SIZE] == "2"
    assert run.data.tags[keys.TAG_DIST_BACKEND] == "gloo"
    assert run.data.tags[keys.TAG_STOP_REASON] == "early_stopping"  # decided on rank 0, obeyed by rank 1
    assert run.data.metrics[keys.BEST_EPOCH] == 1.0
    # checkpoints written once: one folder, under the job's run id
    checkpoints = Path(run.data.tags[keys.TAG_CHECKPOINT_DIR])
    assert checkpoints.name == run.info.run_id and (checkpoints / "last.pt").is_file()
    assert sorted(p.name for p in checkpoints.parent.iterdir()) == sorted(r.info.run_id for r in runs.values())
    # rank 0 speaks for the job: one summary
    assert jobs["two"].stdout.count("stop reason") == 1


def test_its_reduced_metrics_equal_a_single_process_on_the_same_data(jobs):
    client = jobs["client"]
    runs = _runs(client)
    two, single = _curves(client, runs["two-ranks"].info.run_id), _curves(client, jobs["single"].run_id)
    assert jobs["single"].stop_reason == "early_stopping" and jobs["single"].epochs_run == 2
    for key in CURVES:
        assert [s for s, _ in two[key]] == [s for s, _ in single[key]], key
        assert len(two[key]) >= 2, key
        for (step, a), (_, b) in zip(two[key], single[key]):
            assert a == pytest.approx(b, rel=1e-5, abs=1e-6), f"{key} at step {step}: 2 ranks {a}, 1 process {b}"
    assert runs["two-ranks"].data.params["data.batch_size"] == "32"  # the job's micro-batch, 16 per rank


def test_a_stopped_job_resumes_under_torchrun_into_the_same_run_and_curves(jobs):
    client = jobs["client"]
    runs = _runs(client)
    run = client.get_run(runs["resumed"].info.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags[keys.TAG_STOP_REASON] == "early_stopping"
    assert "resuming run" in jobs["resumed"].stdout
    resumed, single = _curves(client, run.info.run_id), _curves(client, jobs["single"].run_id)
    for key in CURVES:
        steps = [s for s, _ in resumed[key]]
        assert not [s for s, n in Counter(steps).items() if n > 1], f"{key}: a step logged twice"
        assert steps == [s for s, _ in single[key]], key
        for (step, a), (_, b) in zip(resumed[key], single[key]):
            assert a == pytest.approx(b, rel=1e-5, abs=1e-6), f"{key} at step {step}: resumed {a}, uninterrupted {b}"


def test_what_rank_0_finds_or_fails_to_find_reaches_every_rank(tmp_path):
    """``World.from_main``: rank 0's answer on every rank; rank 0's input error raised on every rank, none left waiting."""
    script = tmp_path / "from_main.py"
    script.write_text(FROM_MAIN)
    result = torchrun(str(script))
    assert result.returncode == 0, result.stderr[-3000:]
    lines = sorted(line for line in result.stdout.splitlines() if line.startswith("rank "))
    assert lines == sorted(
        f"rank {rank}: {said}"
        for rank in (0, 1)
        for said in ("found {'run_id': 'abc', 'epoch': 3}", "InputError: --resume nope: no such run")
    ), result.stdout


def test_only_train_runs_under_a_multi_process_launcher(monkeypatch, capsys):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert main(["diagnose", "latest"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: paramdoctor diagnose does not run under torchrun (WORLD_SIZE=2)")
    assert err.count("\n") == 1


def test_a_plain_process_is_a_world_of_one(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("RANK", raising=False)
    with distributed.joined() as world:
        assert (world.rank, world.size, world.is_main, world.is_distributed) == (0, 1, True, False)
        assert world.broadcast("x") == "x" and world.gather(3) == [3]
        assert world.from_main(lambda: 7) == 7
