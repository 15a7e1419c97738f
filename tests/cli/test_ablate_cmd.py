"""`paramdoctor ablate` through its real entry point: a tiny real ablation in SQLite, bad input, the base recipe."""

from __future__ import annotations

import json

from mlflow import MlflowClient

from paramdoctor.cli.ablate_cmd import _base
from paramdoctor.cli.app import main
from paramdoctor.config import load_config
from paramdoctor.experiments.ablate import INGREDIENTS, TAG_ABLATION, TAG_SEED, TAG_VARIANT

TINY = ["data.subset=128", "trainer.max_epochs=2"]


def test_a_tiny_ablation_makes_children_of_one_parent_logs_the_chart_and_prints_the_table(
    migrated_store_uri, tmp_path, capsys
):
    code = main(["ablate", "--drop", "augment,weight_decay", "--seeds", "2", "--workers", "1", "-q", *TINY])
    out = capsys.readouterr().out
    assert code == 0
    for text in ("full", "augment", "data.augment=false", "weight_decay", "optimizer.weight_decay=0",
                 "scipy.stats.ttest_rel", "95% CI", "epochs to best", "time to best"):
        assert text in out, text
    assert "within noise" in out or "matters" in out
    assert (tmp_path / "ablation.png").read_bytes()[:4] == b"\x89PNG"

    client = MlflowClient(migrated_store_uri)
    exp = client.get_experiment_by_name("paramdoctor")
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get(TAG_ABLATION) == "true"]
    assert len(parents) == 1
    parent = parents[0]
    children = [r for r in runs if r.info.run_id != parent.info.run_id]
    assert len(children) == 6 and all(r.data.tags["mlflow.parentRunId"] == parent.info.run_id for r in children)
    assert sorted((r.data.tags[TAG_VARIANT], r.data.tags[TAG_SEED]) for r in children) == sorted(
        (v, s) for v in ("full", "augment", "weight_decay") for s in ("42", "43")
    )
    by_variant = {r.data.tags[TAG_VARIANT]: r for r in children if r.data.tags[TAG_SEED] == "43"}
    assert by_variant["augment"].data.params["data.augment"] == "false"
    assert by_variant["weight_decay"].data.params["optimizer.weight_decay"] in ("0", "0.0")
    assert by_variant["full"].data.params["seed"] == "43"
    assert parent.info.status == "FINISHED"

    logged = {a.path for a in client.list_artifacts(parent.info.run_id, "paramdoctor")}
    assert logged == {"paramdoctor/ablation.png", "paramdoctor/ablation.json"}
    payload = json.loads(open(client.download_artifacts(parent.info.run_id, "paramdoctor/ablation.json", str(tmp_path))).read())
    assert payload["parent_run_id"] == parent.info.run_id and payload["seeds"] == [42, 43]
    assert payload["monitor"] == "val/acc" and payload["mode"] == "max" and "ttest_rel" in payload["test"]
    assert [v["name"] for v in payload["variants"]] == ["full", "augment", "weight_decay"]
    full, augment = payload["variants"][0], payload["variants"][1]
    assert full["delta"] is None and full["off"] is None and full["best"]["n"] == 2
    assert {r["run_id"] for r in full["runs"]} == {r.info.run_id for r in children if r.data.tags[TAG_VARIANT] == "full"}
    assert set(augment["delta"]) == {"mean", "ci_low", "ci_high", "p_value", "n", "verdict", "effect"}
    assert augment["delta"]["n"] == 2 and augment["delta"]["verdict"] in ("matters", "within noise")
    best = {r["seed"]: r["best_value"] for r in augment["runs"]}
    ref = {r["seed"]: r["best_value"] for r in full["runs"]}
    assert augment["delta"]["mean"] == sum(best[s] - ref[s] for s in (42, 43)) / 2
    run = augment["runs"][0]
    assert set(run) == {"seed", "run_id", "status", "best_value", "best_epoch", "time_to_best_s"}
    assert run["status"] == "FINISHED" and run["time_to_best_s"] > 0


def test_an_unknown_ingredient_is_exit_2_one_line_and_nothing_trained(tracking_uri, tmp_path, capsys):
    assert main(["ablate", "--drop", "augment,dropout", *TINY]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --drop: unknown ingredient 'dropout'; valid ones: ") and "\n" not in err
    assert all(name in err for name in INGREDIENTS)
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "ablation.png").exists()


def test_only_no_op_ingredients_is_exit_2_and_nothing_trained(tracking_uri, tmp_path, capsys):
    assert main(["ablate", "--drop", "gradient_clip,label_smoothing", *TINY]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: nothing to ablate") and "gradient_clip: no-op" in err
    assert not (tmp_path / "mlflow.db").exists()


def test_a_bad_override_is_exit_2(tracking_uri, tmp_path, capsys):
    assert main(["ablate", "optimizer.lrr=1"]) == 2
    assert "did you mean 'optimizer.lr'" in capsys.readouterr().err
    assert not (tmp_path / "mlflow.db").exists()


def test_the_base_is_a_config_file_or_a_runs_config_with_overrides(migrated_store_uri, tmp_path):
    from paramdoctor.training import fit

    path = tmp_path / "recipe.yaml"
    path.write_text("optimizer:\n  lr: 2e-3\ntrainer:\n  label_smoothing: 0.1\n")
    config, label = _base(str(path), ["trainer.max_epochs=3"], None)
    assert config.optimizer.lr == 2e-3 and config.trainer.max_epochs == 3 and label == str(path)

    trained = load_config(None, ["data.subset=64", "trainer.max_epochs=1", "optimizer.lr=3e-3", "experiment.run_name=base"])
    fit(trained)
    config, label = _base("latest", ["trainer.max_epochs=2"], None)
    assert config.optimizer.lr == 3e-3 and config.data.subset == 64 and config.trainer.max_epochs == 2
    assert config.experiment.run_name is None and label.startswith("run base")


def test_workers_train_the_runs_in_spawned_processes_as_children(migrated_store_uri, capsys):
    code = main(["ablate", "--drop", "augment", "--seeds", "1", "--workers", "2", "--json",
                 "data.subset=64", "trainer.max_epochs=1"])
    assert code == 0
    payload = json.loads(capsys.readouterr().out)
    assert [v["name"] for v in payload["variants"]] == ["full", "augment"]
    assert payload["variants"][1]["delta"]["verdict"] == "needs >= 2 seeds"
    assert payload["variants"][1]["delta"]["ci_low"] is None and payload["variants"][1]["delta"]["p_value"] is None
    client = MlflowClient(migrated_store_uri)
    for variant in payload["variants"]:
        run = client.get_run(variant["runs"][0]["run_id"])
        assert run.data.tags["mlflow.parentRunId"] == payload["parent_run_id"] and run.info.status == "FINISHED"
