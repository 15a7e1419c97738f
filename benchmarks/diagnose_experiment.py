"""How fast ``paramdoctor diagnose --experiment NAME`` judges a whole experiment.

Builds a synthetic experiment in a temporary SQLite MLflow store: N runs
(default 1,000) shaped like ``paramdoctor train`` makes them (the validated
config flattened into params, paramdoctor's tags, per-epoch ``train/`` and
``val/`` loss and accuracy over 20 epochs, ``best/epoch`` and ``best/value``,
optionally per-step ``step/loss`` and ``step/lr/head``, and a ``config.yaml``
artifact per run), a fraction of them overfitting. The rows go straight into
MLflow's tables through its SQLAlchemy models in a few bulk inserts: 1,000 runs
through ``MlflowClient`` take minutes (about 150 ms of SQLite commits per run),
and what is measured here is reading them, not writing them.

Then it times, each a median of ``--repeats``:

(a) the fetch, ``paramdoctor.sources.records_for_experiment``, and its parts:
    ``search_runs`` pages, the bulk metric histories, the ``config.yaml``
    downloads (one per run);
(b) ``paramdoctor.engine.diagnose`` over every record (rules loaded once);
(c) the whole CLI, ``paramdoctor diagnose --experiment NAME --no-log``, in a
    fresh process (imports, fetch, diagnoses, the summary table).

    .venv/bin/python benchmarks/diagnose_experiment.py --runs 1000
"""

from __future__ import annotations

import argparse
import math
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import REPO_ROOT, machine_line, median, reproduce_line  # noqa: E402

EXPERIMENT = "bench-diagnose-experiment"
CONFIG_ARTIFACT = "config.yaml"


# --- a synthetic experiment ------------------------------------------------------------


def curves(epochs: int, overfit: bool, rng: random.Random) -> dict[str, list[tuple[int, float]]]:
    """Epoch curves (1-based): healthy ones fall and flatten together; overfitting ones turn up in val/loss."""
    turn = rng.randint(5, 8)
    rate = rng.uniform(0.18, 0.3)
    noise = lambda: rng.gauss(0.0, 0.004)  # noqa: E731 - a one-line jitter
    out: dict[str, list[tuple[int, float]]] = {k: [] for k in ("train/loss", "val/loss", "train/acc", "val/acc")}
    for e in range(1, epochs + 1):
        train_loss = 1.6 * math.exp(-rate * e) + 0.05
        if overfit:
            train_loss = 2.0 * math.exp(-0.25 * e) + 0.02
            if e > turn:
                val_loss = 0.6 + 0.02 * (e - turn) ** 2
            else:
                val_loss = 2.0 * math.exp(-0.2 * e) + 0.1 + 0.09 * (turn - e) / turn
            val_acc = 0.55 + 0.3 * (1 - math.exp(-0.4 * e)) - (0.004 * (e - turn) if e > turn else 0.0)
        else:
            val_loss = 1.6 * math.exp(-rate * e) + 0.12
            val_acc = 0.95 - 0.6 * math.exp(-0.25 * e)
        out["train/loss"].append((e, train_loss + noise()))
        out["val/loss"].append((e, val_loss + noise()))
        out["train/acc"].append((e, min(0.999, 1.0 - train_loss / 2.2) + noise()))
        out["val/acc"].append((e, val_acc + noise()))
    return out


def build_experiment(store_dir: Path, runs: int, epochs: int, overfit_fraction: float, steps_per_epoch: int,
                     with_artifacts: bool, seed: int) -> tuple[str, int]:
    """Create the store and the experiment; returns (tracking URI, runs that overfit)."""
    from mlflow.store.tracking.dbmodels.models import SqlLatestMetric, SqlMetric, SqlParam, SqlRun, SqlTag
    from mlflow.tracking import MlflowClient

    from paramdoctor import keys
    from paramdoctor.config import TrainConfig, dump_yaml, flatten, to_tree

    uri = f"sqlite:///{store_dir}/mlflow.db"
    client = MlflowClient(tracking_uri=uri)
    artifact_root = store_dir / "artifacts"
    experiment_id = client.create_experiment(EXPERIMENT, artifact_location=artifact_root.as_uri())
    store = client._tracking_client.store  # the SqlAlchemyStore: bulk inserts into its tables

    rng = random.Random(seed)
    healthy_tree = to_tree(TrainConfig.model_validate({"trainer": {"max_epochs": epochs}}))
    overfit_tree = to_tree(TrainConfig.model_validate(
        {"trainer": {"max_epochs": epochs}, "optimizer": {"weight_decay": 0.0}, "data": {"subset": 512}}
    ))
    texts = {False: dump_yaml(healthy_tree), True: dump_yaml(overfit_tree)}
    params_of = {False: flatten(healthy_tree), True: flatten(overfit_tree)}

    rows: dict[str, list[dict[str, Any]]] = {"runs": [], "tags": [], "params": [], "metrics": [], "latest": []}
    now = int(time.time() * 1000)
    n_overfit = 0
    for i in range(runs):
        overfit = rng.random() < overfit_fraction
        n_overfit += overfit
        run_id = uuid.uuid4().hex
        start = now - (runs - i) * 60_000  # one a minute: the newest is the last
        rows["runs"].append({
            "run_uuid": run_id, "name": f"run-{i:05d}", "source_type": "UNKNOWN", "source_name": "",
            "entry_point_name": "", "user_id": "bench", "status": "FINISHED", "start_time": start,
            "end_time": start + 50_000, "deleted_time": None, "source_version": "", "lifecycle_stage": "active",
            "artifact_uri": f"{artifact_root.as_uri()}/{run_id}/artifacts", "experiment_id": int(experiment_id),
        })
        tags = {
            "mlflow.runName": f"run-{i:05d}", keys.TAG_SOURCE: "paramdoctor", keys.TAG_DATASET: "digits",
            keys.TAG_MODEL: "small_cnn", keys.TAG_NUM_CLASSES: "10", keys.TAG_MONITOR: "val/acc",
            keys.TAG_MODE: "max", keys.TAG_STOP_REASON: "max_epochs",
            "paramdoctor.steps_per_epoch": str(steps_per_epoch or 10),
        }
        rows["tags"] += [{"key": k, "value": v, "run_uuid": run_id} for k, v in tags.items()]
        rows["params"] += [
            {"key": k, "value": "null" if v is None else str(v), "run_uuid": run_id} for k, v in params_of[overfit].items()
        ]
        series = curves(epochs, overfit, rng)
        best_epoch, best_value = max(series["val/acc"], key=lambda p: p[1])
        series[keys.BEST_EPOCH] = [(0, float(best_epoch))]
        series[keys.BEST_VALUE] = [(0, best_value)]
        if steps_per_epoch:
            total = epochs * steps_per_epoch
            series[keys.STEP_LOSS] = [
                (s, 1.6 * math.exp(-0.25 * s / steps_per_epoch) + 0.05 + rng.gauss(0, 0.02)) for s in range(1, total + 1)
            ]
            series[keys.step_lr("head")] = [(s, 1e-3 * 0.5 * (1 + math.cos(math.pi * s / total))) for s in range(1, total + 1)]
        for key, points in series.items():
            for step, value in points:
                rows["metrics"].append(
                    {"key": key, "value": value, "timestamp": start + step, "step": step, "is_nan": False, "run_uuid": run_id}
                )
            step, value = points[-1]
            rows["latest"].append(
                {"key": key, "value": value, "timestamp": start + step, "step": step, "is_nan": False, "run_uuid": run_id}
            )
        if with_artifacts:
            folder = artifact_root / run_id / "artifacts"
            folder.mkdir(parents=True)
            (folder / CONFIG_ARTIFACT).write_text(texts[overfit])

    with store.engine.begin() as conn:
        for table, name in ((SqlRun, "runs"), (SqlTag, "tags"), (SqlParam, "params"), (SqlMetric, "metrics"),
                            (SqlLatestMetric, "latest")):
            conn.execute(table.__table__.insert(), rows[name])
    return uri, n_overfit


# --- timing ---------------------------------------------------------------------------


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def fetch_parts(client: Any, compare_download: bool) -> dict[str, float]:
    """The fetch split into its requests (the private helpers records_for_experiment strings together)."""
    from paramdoctor.sources import mlflow_source as src

    experiment = client.get_experiment_by_name(EXPERIMENT)
    t_search, runs = timed(lambda: list(src._search_all(client, [experiment.experiment_id])))
    t_hist, _ = timed(lambda: src._bulk_histories(client, runs))
    t_config, _ = timed(lambda: [src._load_config(client, run) for run in runs])
    parts = {"search_runs": t_search, "metric histories (bulk)": t_hist, "config.yaml downloads": t_config}
    if compare_download:
        parts["  before: client.download_artifacts"] = timed(lambda: [_download_via_client(client, r) for r in runs])[0]
    return parts


def _download_via_client(client: Any, run: Any) -> str:
    """How config.yaml was read before: a runs:/ download, which fetches the run again to find its artifacts."""
    with tempfile.TemporaryDirectory() as tmp:
        return Path(client.download_artifacts(run.info.run_id, CONFIG_ARTIFACT, dst_path=tmp)).read_text()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000, help="runs in the experiment (default 1000)")
    parser.add_argument("--epochs", type=int, default=20, help="epochs per run (default 20)")
    parser.add_argument("--overfit-fraction", type=float, default=0.3, help="share of runs that overfit (default 0.3)")
    parser.add_argument("--steps-per-epoch", type=int, default=0,
                        help="also log step/loss and step/lr/head with this many steps per epoch (default 0: epoch curves only)")
    parser.add_argument("--no-artifacts", action="store_true", help="no config.yaml artifact: the config comes from params")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats of (a) and (b); (c) once per repeat too")
    parser.add_argument("--skip-cli", action="store_true", help="do not time the CLI in a subprocess")
    parser.add_argument("--compare-download", action="store_true",
                        help="also time reading config.yaml through client.download_artifacts (the old way)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import logging
    import warnings

    warnings.filterwarnings("ignore")
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)

    from mlflow.tracking import MlflowClient

    from paramdoctor import engine
    from paramdoctor.sources import records_for_experiment

    print(machine_line())
    with tempfile.TemporaryDirectory(prefix="paramdoctor-bench-experiment-") as tmp:
        store_dir = Path(tmp)
        cwd = os.getcwd()
        os.chdir(store_dir)  # nothing of MLflow's lands in the working directory
        try:
            t_build, (uri, n_overfit) = timed(lambda: build_experiment(
                store_dir, args.runs, args.epochs, args.overfit_fraction, args.steps_per_epoch,
                not args.no_artifacts, args.seed,
            ))
            print(f"experiment: {args.runs} runs x {args.epochs} epochs, {n_overfit} overfitting, "
                  f"{'config.yaml artifacts' if not args.no_artifacts else 'no artifacts'}, "
                  f"{args.steps_per_epoch} steps/epoch of step series; built in {t_build:.1f} s (store schema included)")
            client = MlflowClient(tracking_uri=uri)
            rules = engine.load_rules()
            fetches, diagnoses, clis, parts = [], [], [], []
            records: list = []
            verdicts: dict[str, int] = {}
            by_rule: Counter[str] = Counter()
            for _ in range(args.repeats):
                t, records = timed(lambda: records_for_experiment(EXPERIMENT, client))
                fetches.append(t)
                t, diags = timed(lambda: [engine.diagnose(r, rules) for r in records])
                diagnoses.append(t)
                verdicts = {"findings": sum(1 for d in diags if d.findings), "healthy": sum(1 for d in diags if not d.findings)}
                by_rule = Counter(f.code for d in diags for f in d.findings)
                parts.append(fetch_parts(client, args.compare_download and not args.no_artifacts))
                if not args.skip_cli:
                    clis.append(_time_cli(uri, store_dir))
            n = len(records)
            assert n == args.runs, f"fetched {n} records, expected {args.runs}"
            print(f"verdicts: {verdicts['findings']} with findings, {verdicts['healthy']} healthy "
                  f"({n_overfit} built to overfit); by rule: {', '.join(f'{c} {k}' for c, k in sorted(by_rule.items()))}")
            print(f"(a) fetch  records_for_experiment          {median(fetches):7.2f} s  {n / median(fetches):8.0f} runs/s"
                  f"   (runs: {', '.join(f'{t:.2f}' for t in fetches)})")
            for name in parts[0]:
                value = median([p[name] for p in parts])
                print(f"      {name:<36} {value:7.2f} s  {value / n * 1000:8.2f} ms/run")
            print(f"(b) diagnose every record (engine)         {median(diagnoses):7.2f} s  {n / median(diagnoses):8.0f} runs/s"
                  f"   ({median(diagnoses) / n * 1000:.2f} ms/run)")
            if clis:
                print(f"(c) paramdoctor diagnose --experiment      {median(clis):7.2f} s  {n / median(clis):8.0f} runs/s"
                      f"   (fresh process, --no-log; runs: {', '.join(f'{t:.2f}' for t in clis)})")
        finally:
            os.chdir(cwd)
    print(reproduce_line("diagnose_experiment.py", sys.argv[1:] if argv is None else argv))


def _time_cli(uri: str, cwd: Path) -> float:
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "PYTHONPATH": str(REPO_ROOT)}
    command = [sys.executable, "-m", "paramdoctor", "diagnose", "--experiment", EXPERIMENT, "--no-log"]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode not in (0, 1):
        raise SystemExit(f"the CLI failed (exit {done.returncode}): {done.stderr.strip().splitlines()[-1:]}")
    return elapsed


if __name__ == "__main__":
    main()
