"""The prescription in the tool's own terms: built from a record, written as a patch file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from paramdoctor.diagnosis import ToolPrescription
from paramdoctor.record import RunRecord, Series
from paramdoctor.report import attach_tool_prescription, tool_patch_path, tool_patch_yaml, tool_prescription
from paramdoctor.vocab import ToolChange
from tests.report.diagnoses import sick_diagnosis


def _record(source: str, params: dict | None = None, meta: dict | None = None) -> RunRecord:
    curve = Series(np.arange(1.0, 4.0), np.array([1.0, 0.8, 0.7]))
    return RunRecord(series={"val/loss": curve}, params=params or {}, meta=meta or {}, source=source)


def test_paramdoctor_runs_have_no_tool_prescription():
    diag = attach_tool_prescription(sick_diagnosis(), _record("paramdoctor"))
    assert diag.prescription.tool is None


def test_the_runs_own_values_are_scaled_and_meta_wins_over_params():
    diag = sick_diagnosis()  # weight decay 5e-4 -> 5e-3: 10x
    tool = tool_prescription(diag, _record("transformers", params={"weight_decay": "0.02"}, meta={"weight_decay": 0.03}))
    assert tool is not None and tool.name == "hf_trainer"  # the alias is resolved to the vocabulary's name
    (decay,) = [c for c in tool.changes if c.source_key == "optimizer.weight_decay"]
    assert (decay.key, decay.old, decay.new) == ("weight_decay", 0.03, 0.3)


def test_patch_is_a_flat_mapping_of_plain_settings_with_the_rest_as_comments():
    tool = ToolPrescription(
        "llamafactory",
        [
            ToolChange("lora_dropout", None, 0.2, "regularise", "with finetuning_type: lora", "model.dropout"),
            ToolChange("learning_rate", 1e-4, 3e-5, "calmer", "", "optimizer.lr", 0.3),
            ToolChange("weight_decay", None, None, "stronger", "multiply yours by 10", "optimizer.weight_decay", 10.0),
            ToolChange("learning_rate", 1e-4, 2e-5, "later rule wins", "", "optimizer.lr", 0.2),
        ],
    )
    text = tool_patch_yaml(tool, run="qwen-lora")
    assert yaml.safe_load(text) == {"lora_dropout": 0.2, "learning_rate": 2e-5}
    assert text.startswith("# paramdoctor's prescription for qwen-lora in llamafactory terms")
    assert "# with finetuning_type: lora" in text and "# was 0.0001" in text
    assert "# weight_decay: x10  # stronger [optimizer.weight_decay]; multiply yours by 10" in text


def test_settings_made_in_code_stay_comments():
    tool = ToolPrescription(
        "lightning", [ToolChange("EarlyStopping(patience=...)", None, 3, "stop sooner", "", "early_stopping.patience")]
    )
    text = tool_patch_yaml(tool)
    assert yaml.safe_load(text) is None  # nothing a Trainer argument file could take
    assert "# EarlyStopping(patience=...): 3  # stop sooner" in text
    hf = ToolPrescription("hf_trainer", [
        ToolChange("callbacks", None, "EarlyStoppingCallback(early_stopping_patience=...)", "stop", "", "early_stopping.enabled"),
        ToolChange("load_best_model_at_end", None, True, "keep the best", "", "early_stopping.enabled"),
        ToolChange("lr_scheduler_type", None, "cosine", "decay", "", "scheduler.name"),
    ])
    assert yaml.safe_load(tool_patch_yaml(hf)) == {"load_best_model_at_end": True, "lr_scheduler_type": "cosine"}


def test_patch_path_sits_beside_the_next_config():
    assert tool_patch_path(Path("runs/next.yaml"), "hf_trainer") == Path("runs/next.hf_trainer.yaml")
    assert tool_patch_path(Path("next"), "keras") == Path("next.keras.yaml")


def test_a_change_without_reason_text_still_writes(tmp_path):
    tool = ToolPrescription("ultralytics", [ToolChange("patience", 50, 3, "", "", "early_stopping.patience")])
    path = tmp_path / "p.yaml"
    path.write_text(tool_patch_yaml(tool))
    assert yaml.safe_load(path.read_text()) == {"patience": 3}
    assert "# [early_stopping.patience]" in path.read_text() and "# was 50" in path.read_text()
