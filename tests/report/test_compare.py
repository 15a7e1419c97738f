"""The comparison's table data and picture, from the digits sample runs (real exported records)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from paramdoctor import keys
from paramdoctor.engine import diagnose, load_rules
from paramdoctor.record import RunRecord, Series
from paramdoctor.report.compare import differing_keys, flat_config, group_rows, metric_and_mode, plot_compare, run_row
from paramdoctor.sources.resolve import resolve

SAMPLES = Path(__file__).resolve().parents[2] / "sample_runs"
HEALTHY = ["healthy_seed1", "healthy_seed2", "healthy_seed3"]
OSCILLATING = ["oscillating_sgd_lr1_batch16", "oscillating_sgd_lr1_batch16_seed2", "oscillating_sgd_lr1_batch16_seed3"]


@pytest.fixture(scope="module")
def records() -> dict[str, RunRecord]:
    return {name: resolve(str(SAMPLES / name)).record for name in HEALTHY + OSCILLATING + ["healthy_sgd"]}


def test_only_the_keys_that_differ_count_and_run_names_never_do(records):
    configs = [flat_config(records[n]) for n in HEALTHY]
    assert differing_keys(configs) == ["seed"]  # experiment.run_name differs too, but names a run, not a config
    assert "experiment.run_name" not in configs[0]
    sgd = differing_keys([flat_config(records["healthy_seed1"]), flat_config(records["healthy_sgd"])])
    assert {"optimizer.name", "optimizer.lr", "seed"} <= set(sgd)


def test_values_are_compared_as_yaml_and_an_absent_key_differs():
    a = RunRecord(series={}, params={"model.dropout": "0.10", "flag": "False"}, config={"extra": {"k": 1}})
    b = RunRecord(series={}, params={"model.dropout": "0.1", "flag": "false"})
    configs = [flat_config(a), flat_config(b)]
    assert differing_keys(configs) == ["extra.k"]


def test_run_numbers_best_final_epoch_time_to_best(records):
    record = records["healthy_seed1"]
    diag = diagnose(record, load_rules())
    metric, mode = metric_and_mode([record], None)
    assert (metric, mode) == ("val/acc", "max")
    row = run_row(record, diag, metric, mode, ["seed"], flat_config(record))
    acc = record.get(keys.VAL_ACC)
    assert row.best == pytest.approx(record.meta["best_value"]) and row.best_epoch == record.meta["best_epoch"] == 12
    assert row.final == pytest.approx(acc.values[-1])
    times = record.get(keys.EPOCH_TIME)
    assert row.time_to_best_s == pytest.approx(times.values[times.steps <= 12].sum())
    assert row.epochs_run == len(acc) == 17
    assert row.status == "healthy" and row.findings == [] and row.config_diff == {"seed": "1"}
    loss = run_row(record, diag, *metric_and_mode([record], "val/loss"), [], {})
    assert loss.best == pytest.approx(np.nanmin(record.get(keys.VAL_LOSS).values))


def test_no_epoch_times_means_no_time_to_best():
    record = RunRecord(series={keys.VAL_ACC: Series(np.arange(1, 4), np.array([0.5, 0.7, 0.6]))})
    row = run_row(record, None, "val/acc", "max", [], {})
    assert (row.best, row.best_epoch, row.final, row.time_to_best_s, row.epochs_run) == (0.7, 2.0, 0.6, None, 3)


def test_group_by_seed_gives_mean_and_sample_std(records):
    names = HEALTHY + OSCILLATING
    configs = [flat_config(records[n]) for n in names]
    rows = [run_row(records[n], None, "val/acc", "max", [], c) for n, c in zip(names, configs)]
    groups = group_rows(rows, configs, "seed")
    assert [g.runs for g in groups] == [HEALTHY, OSCILLATING]
    bests = [records[n].get(keys.VAL_ACC).values.max() for n in HEALTHY]
    assert groups[0].stats["best"]["mean"] == pytest.approx(np.mean(bests))
    assert groups[0].stats["best"]["std"] == pytest.approx(np.std(bests, ddof=1))
    assert groups[1].config["optimizer.name"] == "sgd" and "seed" not in groups[1].config
    single = group_rows(rows[:1], configs[:1], "seed")[0]
    assert single.n == 1 and single.stats["best"]["std"] is None and single.label == "all runs"


def test_the_picture_is_a_png_for_runs_and_for_groups(records, tmp_path):
    runs = [records[n] for n in HEALTHY]
    path = plot_compare(runs, HEALTHY, "val/acc", tmp_path / "runs.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    configs = [flat_config(r) for r in runs]
    rows = [run_row(r, None, "val/acc", "max", [], c) for r, c in zip(runs, configs)]
    grouped = plot_compare(runs, HEALTHY, "val/acc", tmp_path / "sub" / "groups.png", groups=group_rows(rows, configs, "seed"))
    assert grouped.stat().st_size > 1000
    bare = RunRecord(series={keys.VAL_LOSS: Series(np.arange(1, 3), np.array([1.0, np.nan]))})
    assert plot_compare([bare, bare], ["a", "b"], "val/acc", tmp_path / "bare.png").exists()  # empty panels say so
