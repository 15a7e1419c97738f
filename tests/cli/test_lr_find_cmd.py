"""`paramdoctor lr-find` through the real entry point: a short real sweep, --apply, --json, bad input, exit codes."""

from __future__ import annotations

import json

import pytest
import typer
from mlflow import MlflowClient

from paramdoctor.cli import app as app_module
from paramdoctor.cli import commands, lr_find_cmd
from paramdoctor.experiments.lr_find import KIND, TAG_KIND, TAG_STATUS

TINY = ["data.subset=160", "data.batch_size=32"]
SHORT = ["--start", "1e-5", "--end", "1", "--steps", "30"]

RECIPE = """\
# tuned by hand
optimizer:
  name: adamw
  lr: 0.001          # head
  backbone_lr: 0.0005
trainer:
  max_epochs: 3
"""


@pytest.fixture
def main(monkeypatch):
    """``paramdoctor.cli.app.main`` over a fresh app that has the lr-find command (commands.py may not list it yet)."""
    fresh = typer.Typer(name="paramdoctor", no_args_is_help=True, add_completion=False,
                        pretty_exceptions_enable=False, rich_markup_mode=None)
    fresh.callback()(app_module._root)
    monkeypatch.setattr(app_module, "app", fresh)
    monkeypatch.setattr(commands, "ALL", [lr_find_cmd.register])
    return app_module.main


def test_a_short_real_sweep_prints_the_pickers_and_logs_one_run(main, migrated_store_uri, tmp_path, capsys):
    code = main(["lr-find", *TINY, *SHORT, "-q"])
    out = capsys.readouterr().out
    assert code == 0, out
    for text in ("paramdoctor lr-find", "robust ★", "valley", "steepest", "minimum", "chosen", "suggested: optimizer.lr =",
                 "train with it:  paramdoctor train data.subset=160 data.batch_size=32 optimizer.lr=", "picture: lr_find.png"):
        assert text in out, text
    assert (tmp_path / "lr_find.png").read_bytes()[:4] == b"\x89PNG"
    client = MlflowClient(migrated_store_uri)
    runs = client.search_runs([client.get_experiment_by_name("paramdoctor").experiment_id])
    assert len(runs) == 1 and runs[0].data.tags[TAG_KIND] == KIND and runs[0].info.status == "FINISHED"


def test_apply_writes_the_suggestion_keeping_the_backbone_ratio_and_json_says_what_changed(
    main, migrated_store_uri, tmp_path, capsys
):
    path = tmp_path / "recipe.yaml"
    path.write_text(RECIPE)
    code = main(["lr-find", str(path), *TINY, *SHORT, "--apply", "--json"])
    payload = json.loads(capsys.readouterr().out)
    assert code == 0
    assert payload["schema_version"] == 1 and payload["status"] == "suggested" and payload["picker"] == "robust"
    assert payload["sweep"]["ratios"]["backbone"] == pytest.approx(0.5)
    assert set(payload["suggestions"]) == {"robust", "valley", "steepest", "minimum"}
    lr, backbone = payload["suggested_lr"], payload["suggested_backbone_lr"]
    assert backbone == pytest.approx(lr * 0.5)
    assert payload["current"] == {"lr": 0.001, "backbone_lr": 0.0005, "backbone_auto": False}
    changes = {c["key"]: c for c in payload["applied"]["changes"]}
    assert changes["optimizer.lr"]["old"] == "0.001" and float(changes["optimizer.lr"]["new"]) == lr
    assert float(changes["optimizer.backbone_lr"]["new"]) == pytest.approx(backbone)

    from paramdoctor.config import load_config

    written = load_config(path)
    assert written.optimizer.lr == lr and written.optimizer.backbone_lr == pytest.approx(lr * 0.5)
    assert written.trainer.max_epochs == 3 and "# tuned by hand" in path.read_text() and "# head" in path.read_text()
    run = MlflowClient(migrated_store_uri).get_run(payload["run_id"])
    assert run.data.metrics["lr_find/suggested_lr"] == pytest.approx(lr)
    assert run.data.tags[TAG_STATUS] == "suggested"


def test_apply_prints_old_to_new(main, migrated_store_uri, tmp_path, capsys):
    path = tmp_path / "recipe.yaml"
    path.write_text(RECIPE)
    assert main(["lr-find", str(path), *TINY, *SHORT, "--apply", "-q"]) == 0
    out = capsys.readouterr().out
    assert f"applied to {path}:" in out.replace("\n", "")
    assert "optimizer.lr: 0.001 -> " in out and "optimizer.backbone_lr: 0.0005 -> " in out


def test_no_descent_is_exit_1_the_run_says_so_and_nothing_is_applied(main, migrated_store_uri, tmp_path, capsys):
    path = tmp_path / "recipe.yaml"
    path.write_text(RECIPE)
    # far too small to move the weights: the loss stays on its plateau
    code = main(["lr-find", str(path), *TINY, "--start", "1e-10", "--end", "1e-8", "--steps", "30", "--apply", "--json"])
    payload = json.loads(capsys.readouterr().out)
    assert code == 1
    assert payload["status"] == "no_suggestion" and payload["suggested_lr"] is None and payload["applied"] is None
    assert "never clearly descended" in payload["suggestions"]["robust"]["reason"]
    assert path.read_text() == RECIPE
    run = MlflowClient(migrated_store_uri).get_run(payload["run_id"])
    assert run.data.tags[TAG_STATUS] == "no_suggestion" and run.info.status == "FINISHED"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["lr-find", "--apply", *TINY], "error: --apply needs a CONFIG file"),
        (["lr-find", "--steps", "5"], "error: --steps 5: expected an integer from 20"),
        (["lr-find", "--start", "1", "--end", "0.1"], "error: --start 1 / --end 0.1: need 0 < start < end"),
        (["lr-find", "--picker", "fastest"], "error: --picker fastest: unknown picker; choose one of robust, valley"),
        (["lr-find", "optimizer.lrr=1"], "error: override optimizer.lrr: unknown config key"),
        (["lr-find", "missing.yaml"], "error: missing.yaml: config file not found"),
        (["lr-find", "data.subset=0"], "error: config: data.subset: Input should be greater than or equal to 1"),
        (["lr-find", "--out", "no/such/dir/x.png"], "error: --out no/such/dir/x.png: the folder no/such/dir does not exist"),
    ],
)
def test_bad_input_is_exit_2_one_line_and_no_run(main, tracking_uri, tmp_path, capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(message) and "\n" not in err, err
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "lr_find.png").exists()


def test_ctrl_c_is_exit_130_and_the_run_is_marked_killed(main, migrated_store_uri, tmp_path, capsys, monkeypatch):
    from paramdoctor.experiments import lr_find as module

    def interrupted(curve):
        raise KeyboardInterrupt

    monkeypatch.setattr(module, "suggest_all", interrupted)
    path = tmp_path / "recipe.yaml"
    path.write_text(RECIPE)
    assert main(["lr-find", str(path), *TINY, *SHORT, "--apply", "-q"]) == 130
    assert "interrupted" in capsys.readouterr().err
    assert path.read_text() == RECIPE
    client = MlflowClient(migrated_store_uri)
    runs = client.search_runs([client.get_experiment_by_name("paramdoctor").experiment_id])
    assert [r.info.status for r in runs] == ["KILLED"]
