"""Which tool wrote a log: decided from the content, not the file name.

A directory is searched for the file a tool leaves in its output folder
(:func:`locate_log`); the file's text is then recognised by its structure:
a JSON object with ``log_history`` is a Hugging Face ``trainer_state.json``,
JSON lines with ``current_steps`` are LLaMA-Factory's ``trainer_log.jsonl``,
a CSV with ``epoch`` and ``step`` columns and sparse rows is Lightning's
``metrics.csv``, a TFRecord whose first event is ``brain.Event`` is a
TensorBoard event file, and so on.
"""

from __future__ import annotations

import json
import re
from enum import Enum
from pathlib import Path
from typing import Any

from paramdoctor.errors import InputError
from paramdoctor.importers import detectron2, fastai, keras, mmcv_log, mmengine, nested_json, tensorboard, timm, wandb
from paramdoctor.importers.names import generic_role
from paramdoctor.importers.reading import CsvTable, JsonLines, parse_csv, parse_json, parse_jsonl, read_text
from paramdoctor.record import EXPORT_FORMAT


class ImportedFormat(str, Enum):
    """A log format paramdoctor reads; ``tool`` is what becomes ``RunRecord.source``."""

    HF_TRAINER_STATE = "hf_trainer_state"
    LLAMAFACTORY_LOG = "llamafactory_log"
    LIGHTNING_CSV = "lightning_csv"
    KERAS_CSV = "keras_csv"
    KERAS_HISTORY = "keras_history"
    ULTRALYTICS_CSV = "ultralytics_csv"
    TENSORBOARD = "tensorboard"
    JSON_HISTORY = "json_history"
    TIMM_SUMMARY = "timm_summary"
    MMENGINE_SCALARS = "mmengine_scalars"
    MMCV_LOG = "mmcv_log_json"
    DETECTRON2_METRICS = "detectron2_metrics"
    FASTAI_CSV = "fastai_csv"
    WANDB_PANEL = "wandb_panel_csv"
    WANDB_HISTORY = "wandb_history_csv"
    CSV = "csv"
    JSONL = "jsonl"
    PARAMDOCTOR_EXPORT = "paramdoctor_export"

    @property
    def tool(self) -> str:
        return _TOOLS[self]


_TOOLS = {
    ImportedFormat.HF_TRAINER_STATE: "hf_trainer",
    ImportedFormat.LLAMAFACTORY_LOG: "llamafactory",
    ImportedFormat.LIGHTNING_CSV: "lightning",
    ImportedFormat.KERAS_CSV: "keras",
    ImportedFormat.KERAS_HISTORY: "keras",
    ImportedFormat.ULTRALYTICS_CSV: "ultralytics",
    ImportedFormat.TENSORBOARD: "tensorboard",
    ImportedFormat.JSON_HISTORY: "json",
    ImportedFormat.TIMM_SUMMARY: "timm",
    ImportedFormat.MMENGINE_SCALARS: "mmengine",
    ImportedFormat.MMCV_LOG: "mmcv",
    ImportedFormat.DETECTRON2_METRICS: "detectron2",
    ImportedFormat.FASTAI_CSV: "fastai",
    ImportedFormat.WANDB_PANEL: "wandb",
    ImportedFormat.WANDB_HISTORY: "wandb",
    ImportedFormat.CSV: "csv",
    ImportedFormat.JSONL: "jsonl",
    ImportedFormat.PARAMDOCTOR_EXPORT: "paramdoctor",
}

# What tools leave in their output folders, most complete first.
_IN_FOLDER = (
    "trainer_state.json", "trainer_log.jsonl", "metrics.csv", "results.csv", "history.json", "run.json",
    "summary.csv", "metrics.json", "scalars.json", "history.csv",
)
_NUMBERED = re.compile(r"^(?:checkpoint|version)[-_](\d+)$")
_TIMESTAMPED = re.compile(r"^\d{8}_\d{6}$")  # OpenMMLab's <work_dir>/<timestamp>/
_NON_SPACE = re.compile(r"\S")
_LIGHTNING_NAME = re.compile(r"(_step|_epoch)$|^lr-")


def locate_log(path: str | Path) -> Path:
    """The log file ``path`` names: the file itself, or the one a tool left in the folder ``path``.

    In a folder: ``trainer_state.json``, ``trainer_log.jsonl``, ``metrics.csv``,
    ``results.csv``, ``history.json``, ``summary.csv`` (timm), ``metrics.json``
    (Detectron2), ``scalars.json`` (MMEngine's ``vis_data``), ``history.csv``
    (fastai); then the newest ``checkpoint-N/`` or ``lightning_logs/version_N/``
    holding one; then MMEngine's newest ``<timestamp>/vis_data/scalars.json`` or
    mmcv's newest ``<timestamp>.log.json``; then the newest folder of TensorBoard
    event files (the folder itself, ``version_N/``, ``runs/<date>/``, up to three
    levels down; the first of its event files stands for all of them); then
    the folder's only CSV/JSON/JSONL file.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if path.is_file():
        return path
    if not path.is_dir():
        raise InputError(f"{path}: not a regular file or folder")
    for name in _IN_FOLDER:
        if (path / name).is_file():
            return path / name
    for parent in (path, path / "lightning_logs"):
        for child in _numbered_children(parent):
            for name in _IN_FOLDER:
                if (child / name).is_file():
                    return child / name
    openmmlab = _openmmlab_log(path)
    if openmmlab is not None:
        return openmmlab
    events = tensorboard.newest_event_folder(path)
    if events is not None:
        return tensorboard.event_files(events)[0]
    candidates = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in (".csv", ".json", ".jsonl"))
    if len(candidates) == 1:
        return candidates[0]
    raise InputError(
        f"{path}: no training log found in this folder (expected trainer_state.json, trainer_log.jsonl, "
        "metrics.csv, results.csv, history.json, summary.csv, metrics.json, vis_data/scalars.json, history.csv, "
        "*.log.json or TensorBoard event files; or give the log file itself)"
    )


def _openmmlab_log(folder: Path) -> Path | None:
    """MMEngine's ``[<timestamp>/]vis_data/scalars.json`` (newest run), else mmcv's newest ``<timestamp>.log.json``."""
    if (folder / "vis_data" / "scalars.json").is_file():
        return folder / "vis_data" / "scalars.json"
    runs = sorted(p for p in folder.iterdir() if _TIMESTAMPED.match(p.name) and (p / "vis_data" / "scalars.json").is_file())
    if runs:
        return runs[-1] / "vis_data" / "scalars.json"
    logs = sorted(p for p in folder.glob("*.log.json") if p.is_file())
    return logs[-1] if logs else None


def _numbered_children(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    numbered = []
    for child in folder.iterdir():
        match = _NUMBERED.match(child.name)
        if match and child.is_dir():
            numbered.append((int(match.group(1)), child))
    return [child for _, child in sorted(numbered, reverse=True)]


def detect_format(path: str | Path) -> ImportedFormat:
    """The format of the log at ``path`` (a file or a tool's output folder), judged by content."""
    file = locate_log(path)
    if tensorboard.is_event_file(file):
        return ImportedFormat.TENSORBOARD
    return sniff(read_text(file), file)[0]


def sniff(text: str, path: Path) -> tuple[ImportedFormat, Any]:
    """The format of ``text`` and its parsed payload (a dict, JsonLines or CsvTable), parsed once."""
    stripped = text.lstrip()
    if stripped.startswith(("{", "[")):
        return _sniff_json(text, stripped, path)
    table = parse_csv(text, path)
    return _csv_format(table), table


def _sniff_json(text: str, stripped: str, path: Path) -> tuple[ImportedFormat, Any]:
    newline = stripped.find("\n")
    first_line = stripped if newline < 0 else stripped[:newline]
    several_lines = newline >= 0 and _NON_SPACE.search(stripped, newline) is not None
    if stripped.startswith("{") and several_lines and _is_object_line(first_line):
        jsonl = parse_jsonl(text, path)
        return _jsonl_format(jsonl), jsonl
    data = parse_json(text, path)
    if isinstance(data, dict):
        if "log_history" in data:
            return ImportedFormat.HF_TRAINER_STATE, data
        if data.get("format") == EXPORT_FORMAT:
            return ImportedFormat.PARAMDOCTOR_EXPORT, data
        if keras.looks_like_history(data):
            return ImportedFormat.KERAS_HISTORY, data
        if nested_json.shape(data):
            return ImportedFormat.JSON_HISTORY, data
        jsonl = JsonLines([(1, data)])
        return _jsonl_format(jsonl), jsonl
    if isinstance(data, list) and data and all(isinstance(item, dict) for item in data):
        jsonl = JsonLines([(i + 1, item) for i, item in enumerate(data)])
        return _jsonl_format(jsonl), jsonl
    if isinstance(data, list) and data and all(isinstance(item, list) for item in data):
        # [[15, 2.18, 2.17], ...]: rows of values without names; their positions name them ("0", "1", "2")
        rows = [(i + 1, {str(j): value for j, value in enumerate(item)}) for i, item in enumerate(data)]
        return ImportedFormat.JSONL, JsonLines(rows)
    what = "an empty list" if data == [] else f"a JSON {type(data).__name__}"
    raise InputError(
        f"{path}: holds {what}; expected a trainer_state.json, a dict of per-epoch lists (a Keras or hand-written "
        "history) or JSON log lines"
    )


def _is_object_line(line: str) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except (ValueError, RecursionError):
        return False


def _jsonl_format(jsonl: JsonLines) -> ImportedFormat:
    first = jsonl.objects[0][1] if jsonl.objects else {}
    if "current_steps" in first and "total_steps" in first:
        return ImportedFormat.LLAMAFACTORY_LOG
    if mmcv_log.looks_like(jsonl.objects):
        return ImportedFormat.MMCV_LOG
    if mmengine.looks_like(jsonl.objects):
        return ImportedFormat.MMENGINE_SCALARS
    if detectron2.looks_like(jsonl.objects):
        return ImportedFormat.DETECTRON2_METRICS
    return ImportedFormat.JSONL


def _csv_format(table: CsvTable) -> ImportedFormat:
    names = set(table.header)
    if wandb.looks_like_panel(table.header):
        return ImportedFormat.WANDB_PANEL
    if wandb.looks_like_history(table.header):
        return ImportedFormat.WANDB_HISTORY
    if "epoch" in names and any(n.startswith("train/") and n.endswith("loss") for n in names):
        if any(n.startswith(("metrics/", "lr/pg")) for n in names):
            return ImportedFormat.ULTRALYTICS_CSV
    if "epoch" in names and "step" in names and any(generic_role(n) for n in names):
        sparse = bool((table.widths < len(table.header)).any()) or not all(col.present.all() for col in table.columns)
        if sparse or any(_LIGHTNING_NAME.search(n) for n in names):
            return ImportedFormat.LIGHTNING_CSV
    if timm.looks_like(table.header):
        return ImportedFormat.TIMM_SUMMARY
    if fastai.looks_like(table.header):
        return ImportedFormat.FASTAI_CSV
    if table.header and table.header[0] == "epoch" and "loss" in names and table.header[1:] == sorted(table.header[1:]):
        return ImportedFormat.KERAS_CSV  # CSVLogger: "epoch", then the logs' keys sorted, always with "loss"
    return ImportedFormat.CSV
