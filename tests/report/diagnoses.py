"""Hand-built diagnoses for the tell-stage tests (fixed, so snapshots are stable)."""

from __future__ import annotations

from paramdoctor.config import TrainConfig, to_tree
from paramdoctor.diagnosis import CATEGORIES, SEVERITIES, Change, Diagnosis, Evidence, Finding, Prescription, Skipped
from paramdoctor.diagnosis import ToolPrescription
from paramdoctor.vocab import translate_changes


def next_config_tree() -> dict:
    tree = to_tree(TrainConfig.model_validate({"trainer": {"max_epochs": 20}}))
    tree["optimizer"]["weight_decay"] = 0.005
    tree["model"]["dropout"] = 0.2
    return tree


def sick_diagnosis() -> Diagnosis:
    """Two findings (warning listed first on purpose, so ordering by severity shows), one skipped rule."""
    return Diagnosis(
        run_id="0123456789abcdef0123456789abcdef",
        run_name="overfit-run",
        findings=[
            Finding(
                code="PD401",
                slug="wasted-epochs",
                category="overtrained",
                severity="warning",
                title="Training went on long after the best epoch",
                evidence=Evidence(
                    message="best val/acc 0.8338 in epoch 9 of 20; 11 epochs added nothing",
                    values={"best_epoch": 9, "epochs_run": 20},
                    onset=10,
                ),
                why="Epochs after the best one cost time and, without restoring the best weights, accuracy.",
                fix="Stop earlier: lower early_stopping.patience.",
            ),
            Finding(
                code="PD201",
                slug="val-loss-turns-up",
                category="overfitting",
                severity="error",
                title="Validation loss turns up while training loss keeps falling",
                evidence=Evidence(
                    message="val/loss bottomed at 0.60 in epoch 7 of 20 and rose 240% while train/loss fell 93%",
                    values={
                        "val_min": 0.6,
                        "val_min_epoch": 7,
                        "val_rise": 2.4,
                        "train_fall": 0.93,
                        "nan_value": float("nan"),
                    },
                    onset=7,
                ),
                why="The model memorises the training set; every later epoch makes it worse on new data.",
                fix="Regularise: more weight decay, dropout before the head.",
            ),
        ],
        skipped=[Skipped(code="PD302", slug="loss-spikes", reason="needs step/grad_norm")],
        prescription=Prescription(
            changes=[
                Change(
                    key="optimizer.weight_decay",
                    old=0.0005,
                    new=0.005,
                    reason="regularise: val loss turns up",
                    rule="PD201",
                ),
                Change(key="model.dropout", old=0.0, new=0.2, reason="regularise the head", rule="PD201"),
            ],
            conflicts=["PD401 asked for early_stopping.patience=3; kept 5 because PD201's regularisation needs epochs"],
            next_config=next_config_tree(),
        ),
        summary={
            "best_epoch": 9, "best_value": 0.8338, "monitor": "val/acc", "epochs_run": 20, "run_status": "FINISHED"
        },
    )


def foreign_diagnosis(tool: str = "lightning", own_values: dict | None = None) -> Diagnosis:
    """The sick diagnosis for a run another tool logged, with its prescription in that tool's terms."""
    diag = sick_diagnosis()
    diag.run_id, diag.run_name, diag.source = None, "version_0", tool
    own = {"weight_decay": "0.0001", "max_epochs": 12} if own_values is None else own_values
    diag.prescription.tool = ToolPrescription(tool, translate_changes(diag.prescription.changes, tool, own))
    return diag


def healthy_diagnosis() -> Diagnosis:
    tree = to_tree(TrainConfig.model_validate({"trainer": {"max_epochs": 20}}))
    return Diagnosis(
        run_id="fedcba9876543210fedcba9876543210",
        run_name="healthy-run",
        prescription=Prescription(next_config=tree),
        summary={
            "best_epoch": 18, "best_value": 0.97, "monitor": "val/acc", "epochs_run": 20, "run_status": "FINISHED"
        },
    )


def _check_finding(f: dict) -> None:
    assert set(f) == {"code", "slug", "category", "severity", "title", "evidence", "why", "fix", "eval_set"}
    assert isinstance(f["code"], str) and isinstance(f["slug"], str) and isinstance(f["title"], str)
    assert f["category"] in CATEGORIES and f["severity"] in SEVERITIES
    assert isinstance(f["why"], str) and isinstance(f["fix"], str)
    ev = f["evidence"]
    assert set(ev) == {"message", "values", "onset", "x_unit"}
    assert f["eval_set"] is None or isinstance(f["eval_set"], str)
    assert isinstance(ev["message"], str) and ev["x_unit"] in ("epoch", "step")
    assert ev["onset"] is None or isinstance(ev["onset"], (int, float))
    assert all(v is None or isinstance(v, (int, float, str)) for v in ev["values"].values())


def check_diagnosis_shape(data: dict) -> None:
    """The documented shape (paramdoctor/report/__init__.py), field by field."""
    assert set(data) == {
        "schema_version", "run_id", "run_name", "status", "missing", "interrupted", "eval_sets", "source", "x_unit",
        "summary", "findings", "skipped", "prescription",
    }
    assert data["schema_version"] == 1
    assert data["run_id"] is None or isinstance(data["run_id"], str)
    assert data["run_name"] is None or isinstance(data["run_name"], str)
    assert data["status"] in ("healthy", "findings", "no_validation", "interrupted")
    assert data["missing"] is None or isinstance(data["missing"], str)
    assert data["interrupted"] is None or isinstance(data["interrupted"], str)
    assert isinstance(data["eval_sets"], list) and all(isinstance(n, str) for n in data["eval_sets"])
    expected = (
        "interrupted"
        if data["interrupted"]
        else "findings"
        if data["findings"]
        else ("no_validation" if data["missing"] else "healthy")
    )
    assert data["status"] == expected
    assert isinstance(data["source"], str) and data["x_unit"] in ("epoch", "step")
    assert isinstance(data["summary"], dict)
    assert all(v is None or isinstance(v, (int, float, str)) for v in data["summary"].values())
    for f in data["findings"]:
        _check_finding(f)
    for s in data["skipped"]:
        assert set(s) == {"code", "slug", "reason"} and all(isinstance(v, str) for v in s.values())
    rx = data["prescription"]
    assert set(rx) == {"patch", "changes", "conflicts", "next_config", "tool"}
    assert isinstance(rx["patch"], dict) and isinstance(rx["next_config"], dict)
    for c in rx["changes"]:
        assert set(c) == {"key", "old", "new", "reason", "rule", "factor", "note"}
        assert isinstance(c["key"], str) and isinstance(c["reason"], str) and isinstance(c["rule"], str)
        assert c["factor"] is None or isinstance(c["factor"], (int, float))
        assert isinstance(c["note"], str)
        assert rx["patch"][c["key"]] == c["new"]
    assert all(isinstance(c, str) for c in rx["conflicts"])
    tool = rx["tool"]
    assert (tool is None) == (data["source"] == "paramdoctor")
    if tool is not None:
        assert set(tool) == {"name", "changes"} and isinstance(tool["name"], str)
        assert {c["source_key"] for c in tool["changes"]} <= {c["key"] for c in rx["changes"]}
        for c in tool["changes"]:
            assert set(c) == {"key", "old", "new", "reason", "note", "source_key", "factor"}
            assert isinstance(c["key"], str) and isinstance(c["reason"], str) and isinstance(c["note"], str)
            assert c["factor"] is None or isinstance(c["factor"], (int, float))
