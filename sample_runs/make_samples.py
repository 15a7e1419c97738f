"""Regenerate the sample-run corpus from scenarios.yaml with real `paramdoctor train` runs.

    python sample_runs/make_samples.py            # every scenario
    python sample_runs/make_samples.py NAME ...   # only these
    python sample_runs/make_samples.py --expect-only   # rewrite expect.yaml from scenarios.yaml, no training

Each run trains into a scratch MLflow store (sample_runs/.store, ignored by git),
then is exported as sample_runs/<name>/run.json (the tool-neutral run format,
curves only, no checkpoints) beside config.yaml, expect.yaml and command.txt.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def load_scenarios() -> tuple[list[str], list[dict]]:
    spec = yaml.safe_load((HERE / "scenarios.yaml").read_text())
    return list(spec.get("common") or []), list(spec["scenarios"])


def write_expect(folder: Path, sc: dict, run_id: str | None) -> None:
    expect = {"what": sc.get("what", ""), "fire": list(sc.get("fire") or []), "may_fire": list(sc.get("may_fire") or [])}
    if run_id:
        expect["run_id"] = run_id
    (folder / "expect.yaml").write_text(yaml.safe_dump(expect, sort_keys=False))


def main(argv: list[str]) -> int:
    if argv[:1] == ["--expect-only"]:
        for sc in load_scenarios()[1]:
            folder = HERE / sc["name"]
            if (folder / "run.json").exists():
                old = yaml.safe_load((folder / "expect.yaml").read_text()) if (folder / "expect.yaml").exists() else {}
                write_expect(folder, sc, (old or {}).get("run_id"))
        return 0
    store = HERE / ".store"
    store.mkdir(exist_ok=True)
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{store}/mlflow.db"
    os.chdir(store)  # a SQLite store keeps artifacts under ./mlruns: keep them in the scratch store

    from paramdoctor.config import dump_yaml, load_config
    from paramdoctor.sources import record_from_mlflow
    from paramdoctor.training import fit

    common, scenarios = load_scenarios()
    wanted = set(argv)
    run_ids: dict[str, str] = {}
    for path in HERE.glob("*/run.json"):  # earlier runs still in the scratch store, for from_run
        rid = yaml.safe_load((path.parent / "expect.yaml").read_text()).get("run_id")
        if rid:
            run_ids[path.parent.name] = rid

    for sc in scenarios:
        name = sc["name"]
        if wanted and name not in wanted:
            continue
        overrides = [*common, *sc.get("overrides", []), "experiment.name=sample_runs", f"experiment.run_name={name}"]
        if sc.get("from_run"):
            overrides.append(f"model.weights=runs:/{run_ids[sc['from_run']]}/checkpoints/best.pt")
        config = load_config(None, overrides)
        t0 = time.perf_counter()
        result = fit(config)
        record = record_from_mlflow(result.run_id)
        out = HERE / name
        out.mkdir(exist_ok=True)
        record.save(out / "run.json")
        (out / "config.yaml").write_text(dump_yaml(config))
        shown = [o for o in overrides if not o.startswith("model.weights=")]
        command = "paramdoctor train " + " ".join(shown)
        if sc.get("from_run"):
            command += f" model.weights=runs:/<run id of {sc['from_run']}>/checkpoints/best.pt"
        (out / "command.txt").write_text(command + "\n")
        write_expect(out, sc, result.run_id)
        run_ids[name] = result.run_id
        print(
            f"{name:45s} {result.status:8s} {result.stop_reason:15s} epochs={result.epochs_run:3d} "
            f"best={result.best_value if result.best_value is not None else float('nan'):.4f} "
            f"({time.perf_counter() - t0:.1f}s)",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
