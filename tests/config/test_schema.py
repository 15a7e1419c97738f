"""The typed config refuses what no setting can mean: NaN and inf anywhere, flush intervals beyond an hour."""

from __future__ import annotations

import pytest

from paramdoctor.cli.app import main
from paramdoctor.config import load_config
from paramdoctor.errors import ConfigError


@pytest.mark.parametrize(
    "override",
    [
        "trainer.flush_every_s=.inf",  # once crashed the metric thread while the run ended "successfully"
        "trainer.flush_every_s=.nan",
        "trainer.heartbeat_every_s=.inf",
        "optimizer.lr=.nan",
        "trainer.gradient_clip_val=.inf",
        "model.batchnorm_momentum=.nan",
        "scheduler.warmup_epochs=.inf",
    ],
)
def test_non_finite_numbers_are_refused_for_every_key(override):
    with pytest.raises(ConfigError, match=override.split("=")[0]):
        load_config(None, [override])


def test_flush_and_heartbeat_intervals_are_bounded():
    with pytest.raises(ConfigError, match="trainer.flush_every_s"):
        load_config(None, ["trainer.flush_every_s=1e9"])
    assert load_config(None, ["trainer.heartbeat_every_s=5"]).trainer.heartbeat_every_s == 5


def test_an_infinite_flush_interval_is_one_line_and_exit_2_with_no_store(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    assert main(["train", "trainer.flush_every_s=.inf"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "trainer.flush_every_s" in err[0]
    assert not (tmp_path / "mlflow.db").exists()
