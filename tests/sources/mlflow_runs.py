"""Make real MLflow runs shaped like ``paramdoctor train`` makes them (helper for the tell-stage tests)."""

from __future__ import annotations

import atexit
import math
import shutil
import tempfile
import time
from pathlib import Path

from paramdoctor import keys
from paramdoctor.config import TrainConfig, dump_yaml, flatten, to_tree


_TEMPLATE: Path | None = None


def new_store(folder: Path):
    """A fresh SQLite MLflow store in ``folder``: (tracking URI, client).

    Creating MLflow's schema takes seconds (dozens of migrations), so the first
    call in a process builds an empty store once and later calls copy the file.
    """
    global _TEMPLATE
    from mlflow.tracking import MlflowClient

    if _TEMPLATE is None:
        template_dir = Path(tempfile.mkdtemp(prefix="paramdoctor-store-template-"))
        atexit.register(shutil.rmtree, template_dir, True)
        MlflowClient(tracking_uri=f"sqlite:///{template_dir}/mlflow.db").search_experiments()
        _TEMPLATE = template_dir / "mlflow.db"
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_TEMPLATE, folder / "mlflow.db")
    uri = f"sqlite:///{folder}/mlflow.db"
    return uri, MlflowClient(tracking_uri=uri)


def _artifacts_beside(client) -> str | None:
    """Artifacts next to a SQLite store's database; MLflow's default (./mlruns) would follow the working directory."""
    if not client.tracking_uri.startswith("sqlite:///"):
        return None  # a file store keeps artifacts inside its own folder
    return (Path(client.tracking_uri[len("sqlite:///") :]).parent / "artifacts").as_uri()


def healthy_curves(epochs: int = 20) -> dict[str, list[tuple[int, float]]]:
    """Both losses fall together and flatten; accuracy rises to the end."""
    curves: dict[str, list[tuple[int, float]]] = {}
    curves[keys.TRAIN_LOSS] = [(e, 1.5 * math.exp(-0.2 * e) + 0.1) for e in range(1, epochs + 1)]
    curves[keys.VAL_LOSS] = [(e, 1.5 * math.exp(-0.2 * e) + 0.15) for e in range(1, epochs + 1)]
    curves[keys.TRAIN_ACC] = [(e, 0.97 - 0.6 * math.exp(-0.25 * e)) for e in range(1, epochs + 1)]
    curves[keys.VAL_ACC] = [(e, 0.95 - 0.6 * math.exp(-0.25 * e)) for e in range(1, epochs + 1)]
    return curves


def overfitting_curves(epochs: int = 20, steps_per_epoch: int = 10) -> dict[str, list[tuple[int, float]]]:
    """Train loss keeps falling; val loss bottoms at epoch 7 and climbs; val acc peaks early."""
    epoch_keys = (keys.TRAIN_LOSS, keys.VAL_LOSS, keys.TRAIN_ACC, keys.VAL_ACC)
    curves: dict[str, list[tuple[int, float]]] = {k: [] for k in epoch_keys}
    for e in range(1, epochs + 1):
        train_loss = 2.0 * math.exp(-0.25 * e) + 0.02
        val_loss = 0.6 + 0.02 * (e - 7) ** 2 if e > 7 else 2.0 * math.exp(-0.2 * e) + 0.1 + 0.09 * (7 - e) / 7
        curves[keys.TRAIN_LOSS].append((e, train_loss))
        curves[keys.VAL_LOSS].append((e, val_loss))
        curves[keys.TRAIN_ACC].append((e, min(0.999, 1.0 - train_loss / 2.2)))
        curves[keys.VAL_ACC].append((e, 0.55 + 0.3 * (1 - math.exp(-0.4 * e)) - (0.004 * (e - 7) if e > 7 else 0)))
    step_loss, lr = [], []
    total = epochs * steps_per_epoch
    for s in range(1, total + 1):
        step_loss.append((s, 2.0 * math.exp(-0.25 * s / steps_per_epoch) + 0.05 * math.sin(s)))
        lr.append((s, 1e-3 * 0.5 * (1 + math.cos(math.pi * s / total))))
    curves[keys.STEP_LOSS] = step_loss
    curves[keys.step_lr("head")] = lr
    return curves


def make_run(
    client,
    *,
    experiment: str = "paramdoctor",
    run_name: str = "overfit-run",
    curves: dict[str, list[tuple[int, float]]] | None = None,
    config: TrainConfig | None = None,
    with_config_artifact: bool = True,
    status: str = "FINISHED",
    tmp_dir: Path | None = None,
) -> str:
    """One finished run with params, tags, metric histories and config.yaml; returns its id."""
    from mlflow.entities import Metric, Param, RunTag

    config = config or TrainConfig.model_validate({"trainer": {"max_epochs": 20}})
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        exp_id = client.create_experiment(experiment, artifact_location=_artifacts_beside(client))
    else:
        exp_id = exp.experiment_id
    run = client.create_run(exp_id, run_name=run_name)
    run_id = run.info.run_id
    tree = to_tree(config)
    params = [Param(k, "null" if v is None else str(v)) for k, v in flatten(tree).items()]
    tags = [
        RunTag(keys.TAG_VERSION, "0.1.0"),
        RunTag(keys.TAG_DATASET, "digits"),
        RunTag(keys.TAG_MODEL, config.model.name),
        RunTag(keys.TAG_NUM_CLASSES, "10"),
        RunTag(keys.TAG_MONITOR, "val/acc"),
        RunTag(keys.TAG_MODE, "max"),
        RunTag(keys.TAG_SOURCE, "paramdoctor"),
        RunTag(keys.TAG_STOP_REASON, "max_epochs"),
        RunTag(keys.TAG_STEPS_PER_EPOCH, "10"),
        RunTag(keys.TAG_TRAIN_SAMPLES, "640"),
    ]
    now = int(time.time() * 1000)
    curves = curves if curves is not None else overfitting_curves()
    metrics = [
        Metric(key, float(v), now + i, int(step)) for key, pts in curves.items() for i, (step, v) in enumerate(pts)
    ]
    if keys.VAL_ACC in curves and curves[keys.VAL_ACC]:
        best_step, best_value = max(curves[keys.VAL_ACC], key=lambda p: p[1])
        metrics += [Metric(keys.BEST_EPOCH, float(best_step), now, 0), Metric(keys.BEST_VALUE, best_value, now, 0)]
    client.log_batch(run_id, params=params, tags=tags)
    for start in range(0, len(metrics), 1000):
        client.log_batch(run_id, metrics=metrics[start : start + 1000])
    if with_config_artifact:
        folder = (tmp_dir or Path.cwd()) / f"cfg-{run_id}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.yaml").write_text(dump_yaml(tree))
        client.log_artifact(run_id, str(folder / "config.yaml"))
    if status != "RUNNING":
        client.set_terminated(run_id, status=status)
    return run_id
