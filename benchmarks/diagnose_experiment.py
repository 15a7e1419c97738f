"""How fast ``paramdoctor diagnose --experiment NAME`` judges a whole experiment: fetch, engine per run, end to end.

Builds a synthetic experiment of N runs (default 1,000) shaped like
``paramdoctor train`` makes them: the validated config flattened into params
(a learning rate and a seed of its own per run, so no two runs share a
config), paramdoctor's tags, per-epoch ``train/`` and ``val/`` loss and
accuracy over 20 epochs, ``best/epoch`` and ``best/value``, optionally
per-step ``step/loss`` and ``step/lr/head``, and a ``config.yaml`` artifact
per run; a fraction of them overfit.

Where the experiment lives (``--tracking-uri``):

- nothing given: a scratch SQLite store in a temporary folder (removed after);
- a database URI MLflow reads directly (``postgresql://user:pw@host:port/db``,
  ``sqlite:///path.db``, ``mysql://...``): the rows go into that store (its
  schema is created on first use), artifacts into a temporary folder;
- a tracking server (``http://host:port``): runs are logged through
  ``MlflowClient`` (``log_batch`` and ``log_artifact``, 8 at a time), which is
  slow to build but is exactly what a team's server holds.

On a SQL store the rows go straight into MLflow's tables through its
SQLAlchemy models in a few bulk inserts: 1,000 runs through ``MlflowClient``
take minutes, and what is measured here is reading them, not writing them.
``--existing NAME`` skips building and measures an experiment already there.
``--team-server`` starts a throwaway PostgreSQL cluster with a real ``mlflow
server`` in front of it (``benchmarks/pg_server.py``), inserts the runs into
its database and the folder it serves artifacts from (``mlflow-artifacts:/``),
and measures through ``http://`` as a team's client would.

Then it times (each a median of ``--repeats``):

(a) the fetch, ``paramdoctor.sources.records_for_experiment``, and its parts;
(b) ``paramdoctor.engine.diagnose`` on every record (rules loaded once): per
    run, wall clock and this process's CPU time (on a shared machine the CPU
    time is the steadier figure), median and 95th percentile;
(c) end to end: ``paramdoctor diagnose --experiment NAME --no-log`` in a fresh
    process (imports, fetch, every diagnosis, the summary table).

    .venv/bin/python benchmarks/diagnose_experiment.py                 # 1,000 runs, scratch SQLite
    .venv/bin/python benchmarks/diagnose_experiment.py --runs 10000
    .venv/bin/python benchmarks/diagnose_experiment.py --tracking-uri postgresql://mlflow:mlflow@127.0.0.1:5432/mlflow
    .venv/bin/python benchmarks/diagnose_experiment.py --team-server --runs 10000
    .venv/bin/python benchmarks/diagnose_experiment.py --tracking-uri http://127.0.0.1:5000 --runs 200
"""

from __future__ import annotations

import argparse
import math
import os
import random
import statistics
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
LEARNING_RATES = (1e-4, 2e-4, 3e-4, 5e-4, 1e-3, 2e-3, 3e-3)


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


def synthetic_runs(runs: int, epochs: int, overfit_fraction: float, steps_per_epoch: int, seed: int):
    """Yield (index, overfit, config tree, tags, series) for each run; the same for the same seed."""
    from paramdoctor import keys
    from paramdoctor.config import TrainConfig, to_tree

    rng = random.Random(seed)
    for i in range(runs):
        overfit = rng.random() < overfit_fraction
        settings: dict[str, Any] = {
            "seed": i,
            "trainer": {"max_epochs": epochs},
            "optimizer": {"lr": rng.choice(LEARNING_RATES)},
        }
        if overfit:
            settings["optimizer"]["weight_decay"] = 0.0
            settings["data"] = {"subset": 512}
        tree = to_tree(TrainConfig.model_validate(settings))
        tags = {
            "mlflow.runName": f"run-{i:05d}", keys.TAG_SOURCE: "paramdoctor", keys.TAG_DATASET: "digits",
            keys.TAG_MODEL: "small_cnn", keys.TAG_NUM_CLASSES: "10", keys.TAG_MONITOR: "val/acc",
            keys.TAG_MODE: "max", keys.TAG_STOP_REASON: "max_epochs",
            "paramdoctor.steps_per_epoch": str(steps_per_epoch or 10),
        }
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
        yield i, overfit, tree, tags, series


def build_sql(uri: str, name: str, artifact_root: Path, runs: int, epochs: int, overfit_fraction: float,
              steps_per_epoch: int, with_artifacts: bool, seed: int, artifact_uri: str | None = None) -> int:
    """Insert the experiment into a SQL store's tables in bulk; returns how many runs overfit.

    Artifacts are files under ``artifact_root``, which runs address as
    ``artifact_uri`` (its ``file://`` URI unless given: a server's
    ``mlflow-artifacts:/...`` for the folder it serves).
    """
    from mlflow.store.tracking.dbmodels.models import SqlLatestMetric, SqlMetric, SqlParam, SqlRun, SqlTag
    from mlflow.tracking import MlflowClient

    from paramdoctor.config import dump_yaml, flatten

    client = MlflowClient(tracking_uri=uri)
    artifact_uri = artifact_uri or artifact_root.as_uri()
    experiment_id = client.create_experiment(name, artifact_location=artifact_uri)
    store = client._tracking_client.store  # the SqlAlchemyStore: bulk inserts into its tables
    now = int(time.time() * 1000)
    n_overfit = 0
    tables = ((SqlRun, "runs"), (SqlTag, "tags"), (SqlParam, "params"), (SqlMetric, "metrics"), (SqlLatestMetric, "latest"))
    rows: dict[str, list[dict[str, Any]]] = {name_: [] for _, name_ in tables}

    def flush() -> None:
        with store.engine.begin() as conn:
            for table, table_name in tables:
                if rows[table_name]:
                    conn.execute(table.__table__.insert(), rows[table_name])
                rows[table_name].clear()

    for i, overfit, tree, tags, series in synthetic_runs(runs, epochs, overfit_fraction, steps_per_epoch, seed):
        n_overfit += overfit
        run_id = uuid.uuid4().hex
        start = now - (runs - i) * 60_000  # one a minute: the newest is the last
        rows["runs"].append({
            "run_uuid": run_id, "name": f"run-{i:05d}", "source_type": "UNKNOWN", "source_name": "",
            "entry_point_name": "", "user_id": "bench", "status": "FINISHED", "start_time": start,
            "end_time": start + 50_000, "deleted_time": None, "source_version": "", "lifecycle_stage": "active",
            "artifact_uri": f"{artifact_uri}/{run_id}/artifacts", "experiment_id": int(experiment_id),
        })
        rows["tags"] += [{"key": k, "value": v, "run_uuid": run_id} for k, v in tags.items()]
        rows["params"] += [
            {"key": k, "value": "null" if v is None else str(v), "run_uuid": run_id} for k, v in flatten(tree).items()
        ]
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
            (folder / CONFIG_ARTIFACT).write_text(dump_yaml(tree))
        if len(rows["metrics"]) > 200_000:
            flush()
    flush()
    return n_overfit


def build_via_client(uri: str, name: str, scratch: Path, runs: int, epochs: int, overfit_fraction: float,
                     steps_per_epoch: int, with_artifacts: bool, seed: int) -> int:
    """Log the experiment through ``MlflowClient`` (a tracking server), 8 runs at a time; returns how many overfit."""
    from concurrent.futures import ThreadPoolExecutor

    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    from paramdoctor.config import dump_yaml, flatten

    client = MlflowClient(tracking_uri=uri)
    experiment_id = client.create_experiment(name)
    now = int(time.time() * 1000)

    def log(item: tuple) -> bool:
        i, overfit, tree, tags, series = item
        start = now - (runs - i) * 60_000
        run = client.create_run(experiment_id, start_time=start, run_name=tags["mlflow.runName"])
        run_id = run.info.run_id
        params = [Param(k, "null" if v is None else str(v)) for k, v in flatten(tree).items()]
        metrics = [Metric(key, value, start + step, step) for key, points in series.items() for step, value in points]
        run_tags = [RunTag(k, v) for k, v in tags.items()]
        for begin in range(0, max(len(params), len(run_tags)), 100):  # MLflow's limits per request
            client.log_batch(run_id, params=params[begin : begin + 100], tags=run_tags[begin : begin + 100])
        for begin in range(0, len(metrics), 1000):
            client.log_batch(run_id, metrics=metrics[begin : begin + 1000])
        if with_artifacts:
            folder = scratch / run_id
            folder.mkdir(parents=True)
            (folder / CONFIG_ARTIFACT).write_text(dump_yaml(tree))
            client.log_artifact(run_id, str(folder / CONFIG_ARTIFACT))
        client.set_terminated(run_id, "FINISHED", end_time=start + 50_000)
        return overfit

    with ThreadPoolExecutor(max_workers=8) as pool:
        return sum(pool.map(log, synthetic_runs(runs, epochs, overfit_fraction, steps_per_epoch, seed)))


# --- timing ---------------------------------------------------------------------------


def timed(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    """(wall seconds, CPU seconds of this process, result)."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, result


def fetch_parts(client: Any, name: str) -> dict[str, float]:
    """The fetch split into its parts (the helpers ``records_for_experiment`` strings together), wall seconds."""
    from paramdoctor.sources import mlflow_source as src

    experiment = client.get_experiment_by_name(name)
    try:
        from paramdoctor.sources import sql_bulk
    except ImportError:  # the code before the SQL path existed (to time it for comparison)
        sql_bulk = None
    store = sql_bulk.sql_store(client) if sql_bulk is not None else None
    parts: dict[str, float] = {}
    if store is not None:
        parts["runs, params, tags, histories (SQL)"], _, (runs, _) = timed(
            lambda: sql_bulk.read_experiment(store, experiment.experiment_id)
        )
    else:
        parts["search_runs"], _, runs = timed(lambda: list(src._search_all(client, [experiment.experiment_id])))
        parts["metric histories"], _, _ = timed(lambda: src._bulk_histories(client, runs))
    load_all = getattr(src, "_load_configs", None) or (lambda c, rs: [src._load_config(c, r) for r in rs])
    parts["config.yaml reads"], _, _ = timed(lambda: load_all(client, runs))
    return parts


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(math.ceil(q * len(ordered))) - 1)]


def engine_times(records: list, rules: list) -> tuple[list[float], list[float], list]:
    """Per-run wall and CPU seconds of ``engine.diagnose``, and the diagnoses."""
    from paramdoctor import engine

    walls, cpus, diagnoses = [], [], []
    for record in records:
        wall, cpu, diag = timed(lambda: engine.diagnose(record, rules))
        walls.append(wall)
        cpus.append(cpu)
        diagnoses.append(diag)
    return walls, cpus, diagnoses


def time_cli(uri: str, name: str, cwd: Path) -> float:
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "PYTHONPATH": str(REPO_ROOT)}
    command = [sys.executable, "-m", "paramdoctor", "diagnose", "--experiment", name, "--no-log"]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode not in (0, 1):
        raise SystemExit(f"the CLI failed (exit {done.returncode}): {done.stderr.strip().splitlines()[-1:]}")
    return elapsed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000, help="runs in the experiment (default 1000)")
    parser.add_argument("--epochs", type=int, default=20, help="epochs per run (default 20)")
    parser.add_argument("--overfit-fraction", type=float, default=0.3, help="share of runs that overfit (default 0.3)")
    parser.add_argument("--steps-per-epoch", type=int, default=0,
                        help="also log step/loss and step/lr/head with this many steps per epoch (default 0: epoch curves only)")
    parser.add_argument("--no-artifacts", action="store_true", help="no config.yaml artifact: the config comes from params")
    parser.add_argument("--tracking-uri", metavar="URI",
                        help="a SQL store (postgresql://..., sqlite:///...) or a tracking server (http://...); "
                             "default: a scratch SQLite store")
    parser.add_argument("--existing", metavar="NAME", help="measure this experiment already in --tracking-uri; build nothing")
    parser.add_argument("--team-server", action="store_true",
                        help="start a throwaway PostgreSQL-backed mlflow server (benchmarks/pg_server.py), put the runs "
                             "into its database and artifact folder, and measure through http:// as a team's client would")
    parser.add_argument("--repeats", type=int, default=1, help="timed repeats of (a), (b) and (c) (default 1)")
    parser.add_argument("--skip-cli", action="store_true", help="do not time the CLI in a subprocess")
    parser.add_argument("--skip-parts", action="store_true",
                        help="do not time the fetch's parts one by one (on a server they repeat the whole fetch)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.existing and not args.tracking_uri:
        parser.error("--existing needs --tracking-uri")
    if args.team_server and (args.tracking_uri or args.existing):
        parser.error("--team-server starts its own server: no --tracking-uri or --existing with it")
    if args.team_server:
        from benchmarks import pg_server

        reason = pg_server.unavailable()
        if reason:
            raise SystemExit(f"error: --team-server: {reason}")
        with pg_server.team_server(workers=4) as team:
            run(args, argv, team)
        return
    run(args, argv, None)


def run(args: argparse.Namespace, argv: list[str] | None, team: Any) -> None:
    """Build (unless ``--existing``), then time (a), (b) and (c); ``team`` is a started team server or None."""
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)

    from mlflow.tracking import MlflowClient

    from paramdoctor import engine
    from paramdoctor.sources import records_for_experiment

    print(machine_line())
    with tempfile.TemporaryDirectory(prefix="paramdoctor-bench-experiment-") as tmp:
        scratch = Path(tmp)
        cwd = os.getcwd()
        os.chdir(scratch)  # nothing of MLflow's lands in the working directory
        try:
            if team is not None:
                uri = team.tracking_uri
                where = f"a PostgreSQL-backed mlflow server ({uri}, 4 workers)"
            else:
                uri = args.tracking_uri or f"sqlite:///{scratch}/mlflow.db"
                where = "scratch SQLite store" if not args.tracking_uri else _redacted(uri)
            if args.existing:
                name, n_overfit = args.existing, None
                print(f"experiment: {name} at {where} (existing)")
            else:
                # a fresh name on a shared store; the scratch store's own name otherwise
                name = EXPERIMENT if not (args.tracking_uri or team) else f"{EXPERIMENT}-{uuid.uuid4().hex[:8]}"
                settings = (args.runs, args.epochs, args.overfit_fraction, args.steps_per_epoch, not args.no_artifacts, args.seed)
                if team is not None:  # straight into the server's database and the folder it serves artifacts from
                    build = lambda: build_sql(  # noqa: E731
                        team.backend_uri, name, team.server.artifacts / name, *settings, artifact_uri=f"mlflow-artifacts:/{name}"
                    )
                elif uri.startswith(("http://", "https://")):
                    build = lambda: build_via_client(uri, name, scratch / "artifacts", *settings)  # noqa: E731
                else:
                    build = lambda: build_sql(uri, name, scratch / "artifacts", *settings)  # noqa: E731
                t_build, _, n_overfit = timed(build)
                print(f"experiment: {name} at {where}: {args.runs} runs x {args.epochs} epochs, {n_overfit} overfitting, "
                      f"{'a config.yaml artifact each' if not args.no_artifacts else 'no artifacts'}, "
                      f"{args.steps_per_epoch} steps/epoch of step series; built in {t_build:.1f} s")
            client = MlflowClient(tracking_uri=uri)
            rules = engine.load_rules()
            fetches, fetch_cpus, parts, clis = [], [], [], []
            walls: list[float] = []
            cpus: list[float] = []
            totals: list[float] = []
            diags: list = []
            records: list = []
            for _ in range(args.repeats):
                t, c, records = timed(lambda: records_for_experiment(name, client))
                fetches.append(t)
                fetch_cpus.append(c)
                if not args.skip_parts:
                    parts.append(fetch_parts(client, name))
                t, _, (walls, cpus, diags) = timed(lambda: engine_times(records, rules))
                totals.append(t)
                if not args.skip_cli:
                    clis.append(time_cli(uri, name, scratch))
            n = len(records)
            if not args.existing:
                assert n == args.runs, f"fetched {n} records, expected {args.runs}"
            by_rule = Counter(f.code for d in diags for f in d.findings)
            sick = sum(1 for d in diags if d.findings)
            built = f" ({n_overfit} built to overfit)" if n_overfit is not None else ""
            print(f"verdicts: {sick} with findings, {n - sick} healthy{built}; "
                  f"by rule: {', '.join(f'{c} {k}' for c, k in sorted(by_rule.items()))}")
            print(f"(a) fetch  records_for_experiment          {median(fetches):7.2f} s  {n / median(fetches):8.0f} runs/s"
                  f"   (CPU {median(fetch_cpus):.2f} s; runs: {', '.join(f'{t:.2f}' for t in fetches)})")
            for part in parts[0] if parts else ():
                value = median([p[part] for p in parts])
                print(f"      {part:<36} {value:7.2f} s  {value / n * 1000:8.2f} ms/run")
            print(f"(b) engine.diagnose per run: wall median {statistics.median(walls) * 1000:.2f} ms, "
                  f"p95 {percentile(walls, 0.95) * 1000:.2f} ms; CPU median {statistics.median(cpus) * 1000:.2f} ms, "
                  f"p95 {percentile(cpus, 0.95) * 1000:.2f} ms; all {n} runs {median(totals):.2f} s (last repeat)")
            if clis:
                print(f"(c) end to end: paramdoctor diagnose --experiment --no-log   {median(clis):7.2f} s  "
                      f"{n / median(clis):8.0f} runs/s   (fresh process; runs: {', '.join(f'{t:.2f}' for t in clis)})")
            try:
                load = "%.1f" % os.getloadavg()[0]
            except OSError:
                load = "n/a"
            print(f"load average at the end: {load}")
        finally:
            os.chdir(cwd)
    print(reproduce_line("diagnose_experiment.py", sys.argv[1:] if argv is None else argv))


def _redacted(uri: str) -> str:
    """The URI without a password (``postgresql://user:***@host/db``)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


if __name__ == "__main__":
    main()
