"""TensorBoard event files (``events.out.tfevents.*``), read with the ``tensorboard`` package; no TensorFlow.

Lightning's ``TensorBoardLogger`` writes ``lightning_logs/version_N/events...``
with the ``self.log`` names (``train_loss_step``, ``val_loss``, ``epoch``,
``lr-AdamW`` from ``LearningRateMonitor``, ``hp_metric``) at the global step,
and ``hparams.yaml`` beside it. Hugging Face ``report_to="tensorboard"``
writes ``runs/<date>_<host>/events...`` with the ``on_log`` names rewritten
(``train/loss``, ``train/learning_rate``, ``train/grad_norm``, ``train/epoch``,
``eval/loss``, ``eval/accuracy``, ``eval/<set>_loss`` for several evaluation
sets) and the ``TrainingArguments`` as a text summary named ``args``.

A folder's event files are one run (TensorBoard's own rule), read in name
order (the name starts with the creation time). Scalars logged at the same
step one after another become one row; a step that goes down starts a new
run, as in other logs. A record cut short at the end of a file (a job still
writing) is dropped; a damaged record elsewhere is an error.
"""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path
from typing import Any

from paramdoctor.errors import InputError
from paramdoctor.importers.eval_sets import with_eval_sets
from paramdoctor.importers.names import (
    EVAL, LR, STEP, Role, generic_role, hf_rewritten_role, primary_metric, val_metric_key,
)
from paramdoctor.importers.reading import MAX_BYTES, printable
from paramdoctor.importers.rows import read_sidecar_yaml, roles_for, row_from, scalar_config, scalar_params
from paramdoctor.importers.table import GUESS, PROGRESS, ParsedLog, Row

PREFIX = "events.out.tfevents."
_STEP = "\x00step"  # cannot clash with a tag
_HF_MARKS = ("train/epoch", "train/learning_rate", "train/global_step", "train/train_runtime", "train/total_flos")
_DETECTRON2_EVAL = re.compile(r"^(?:bbox|segm|keypoints|sem_seg|panoptic_seg)/[A-Za-z0-9]+$")
_ARGS_TAGS = ("args", "args/text_summary")  # HF's add_text("args", ...): torch's writer appends /text_summary
_LIGHTNING_NAME = re.compile(r"(_step|_epoch)$|^lr-|/dataloader_idx_\d+$")
_NAME_TIME = re.compile(r"^events\.out\.tfevents\.(\d+)")


def is_event_file(path: Path) -> bool:
    """Whether ``path`` is a TFRecord file of TensorBoard events: by its first record (``file_version`` ``brain.Event:N``)."""
    try:
        with path.open("rb") as fh:
            head = fh.read(64)
    except OSError:
        return False
    if len(head) < 16:
        return False
    (length,) = struct.unpack("<Q", head[:8])
    return 0 < length < 1024 and b"brain.Event:" in head[12 : 12 + length]


def event_files(folder: Path) -> list[Path]:
    """The event files directly in ``folder``, oldest first (their names begin with the creation time)."""
    try:
        found = [p for p in folder.iterdir() if p.name.startswith(PREFIX) and p.is_file()]
    except OSError:
        return []
    return sorted(found, key=lambda p: (_created(p), p.name))


def newest_event_folder(folder: Path, depth: int = 3) -> Path | None:
    """The folder under ``folder`` (itself included, ``depth`` levels down) whose event files were written last."""
    best: tuple[tuple[int, float], Path] | None = None
    frontier = [folder]
    for _ in range(depth + 1):
        next_frontier = []
        for current in frontier:
            files = event_files(current)
            if files:
                stamp = max((_created(p), _mtime(p)) for p in files)
                if best is None or stamp > best[0]:
                    best = (stamp, current)
            try:
                next_frontier += sorted(p for p in current.iterdir() if p.is_dir() and not p.name.startswith("."))
            except OSError:
                continue
        frontier = next_frontier[:500]
    return best[1] if best else None


def _created(path: Path) -> int:
    match = _NAME_TIME.match(path.name)
    return int(match.group(1)) if match else 0


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def parse(path: Path, files: list[Path], mapping: dict[str, str] | None) -> ParsedLog:
    """The scalars of ``files`` (one run's event files, oldest first) as rows with roles."""
    rows: list[Row] = []
    tags: dict[str, None] = {}
    texts: dict[str, str] = {}
    truncated = False
    for file in files:
        truncated = _read(file, rows, tags, texts) or truncated
    names = list(tags)
    hf = any(name in tags for name in _HF_MARKS)
    detection = "total_loss" in tags
    base = hf_rewritten_role if hf else (_detectron2_role if detection else generic_role)
    roles = roles_for(names, with_eval_sets(base, names), mapping, path)
    epoch_col = "train/epoch" if hf else ("epoch" if "epoch" in tags else None)
    counters = (_STEP, epoch_col)
    checked = [row_from(row.values, roles, counters, row.line, f"record {row.line}", path) for row in rows]
    if epoch_col and not hf:
        _fill_epochs(checked, epoch_col)
    sidecar = read_sidecar_yaml(path.parent / "hparams.yaml") or _json_object(texts.get("args"))
    meta: dict[str, Any] = {"event_files": len(files), "finished": hf and "train/train_runtime" in tags}
    if truncated:
        meta["truncated_last_line"] = True
    monitor = primary_metric(role.key for role in roles.values())
    if monitor and monitor != "val/acc" and detection:
        meta.update(monitor=monitor, mode="max")
    for key in ("max_epochs", "num_train_epochs"):
        if isinstance(sidecar.get(key), (int, float)) and not isinstance(sidecar.get(key), bool) and sidecar[key] > 0:
            meta["max_epochs"] = sidecar[key]
    lightning = "hp_metric" in tags or (path.parent / "hparams.yaml").is_file() or any(_LIGHTNING_NAME.search(t) for t in tags)
    return ParsedLog(
        tool="hf_trainer" if hf else ("detectron2" if detection else ("lightning" if lightning else "tensorboard")),
        rows=checked,
        roles=roles,
        step_col=_STEP,
        epoch_col=epoch_col,
        epoch_kind=PROGRESS if hf else GUESS,
        params=scalar_params(sidecar),
        config=scalar_config(sidecar),
        meta=meta,
    )


def _read(file: Path, rows: list[Row], tags: dict[str, None], texts: dict[str, str]) -> bool:
    """Append ``file``'s scalars to ``rows``; True when its last record was cut short.

    ``RawEventFileLoader`` checks each record's checksums and stops quietly at
    the first bad one; counting the records against the file's framing tells a
    record cut short at the end (kept quiet) from damage in the middle (an error).
    """
    from tensorboard import data_compat, dataclass_compat
    from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader
    from tensorboard.compat.proto import event_pb2
    from tensorboard.util import tensor_util

    size = _size(file)
    plugins: dict[str, str] = {}
    initial_metadata: dict = {}
    current: dict[str, float] = {}
    count = 0
    try:
        for record in RawEventFileLoader(str(file)).Load():
            count += 1
            event = event_pb2.Event.FromString(record)
            for migrated in dataclass_compat.migrate_event(data_compat.migrate_event(event), initial_metadata):
                if migrated.WhichOneof("what") != "summary":
                    continue
                for value in migrated.summary.value:
                    if value.HasField("metadata") and value.metadata.plugin_data.plugin_name:
                        plugins.setdefault(value.tag, value.metadata.plugin_data.plugin_name)
                    plugin = plugins.get(value.tag)
                    if plugin == "text" and value.tag in _ARGS_TAGS and value.HasField("tensor"):
                        texts["args"] = _text(tensor_util.make_ndarray(value.tensor))
                    if plugin != "scalars" or not value.HasField("tensor"):
                        continue
                    array = tensor_util.make_ndarray(value.tensor)
                    if array.size != 1:
                        continue
                    number = float(array.reshape(-1)[0])
                    step = float(migrated.step)
                    same_row = current and current[_STEP] == step and current.get(value.tag, number) == number
                    if not same_row:
                        current = {_STEP: step}
                        rows.append(Row(current, count))
                    current[value.tag] = number
                    tags.setdefault(value.tag, None)
    except Exception as exc:  # protobuf and tensor decoding raise many kinds on corrupt input
        raise InputError(f"{file}: unreadable event file (record {count}: {printable(type(exc).__name__)})") from None
    whole, cut_short = _framing(file, size)
    if count < whole:
        raise InputError(f"{file}: damaged event file (record {count + 1} of {whole} fails its checksum)")
    return cut_short


def _size(file: Path) -> int:
    try:
        size = file.stat().st_size
    except OSError as exc:
        raise InputError(f"{file}: cannot read ({exc.strerror or exc})") from None
    if size > MAX_BYTES:
        raise InputError(
            f"{file}: {size / 2**20:.0f} MiB is more than the {MAX_BYTES // 2**20} MiB paramdoctor reads from one event file "
            "(log images and histograms to another writer, or export the scalars as CSV)"
        )
    return size


def _framing(file: Path, size: int) -> tuple[int, bool]:
    """(records that fit whole in the file by their length headers, whether bytes of an incomplete record follow)."""
    whole, offset = 0, 0
    try:
        with file.open("rb") as fh:
            while offset + 12 <= size:
                fh.seek(offset)
                (length,) = struct.unpack("<Q", fh.read(8))
                end = offset + 12 + length + 4
                if end > size:
                    break
                whole, offset = whole + 1, end
    except OSError as exc:
        raise InputError(f"{file}: cannot read ({exc.strerror or exc})") from None
    return whole, offset < size


def _fill_epochs(rows: list[Row], epoch_col: str) -> None:
    """Give rows logged without ``epoch`` (``LearningRateMonitor``) the epoch of the next row that has one."""
    following: float | None = None
    for row in reversed(rows):
        if epoch_col in row.values:
            following = row.values[epoch_col]
        elif following is not None:
            row.values[epoch_col] = following


def _detectron2_role(name: str) -> Role | None:
    """Detectron2's ``TensorboardXWriter`` tags: the names of its ``metrics.json``."""
    if name == "total_loss":
        return Role("step/loss", STEP)
    if name == "lr":
        return Role(LR, STEP)
    if _DETECTRON2_EVAL.match(name):
        return Role(val_metric_key(name), EVAL)
    return None


def _text(array: Any) -> str:
    item = array.reshape(-1)[0] if getattr(array, "size", 0) else b""
    return item.decode("utf-8", "replace") if isinstance(item, bytes) else str(item)


def _json_object(text: str | None) -> dict[str, Any]:
    if not text or len(text) > 1_000_000:
        return {}
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}
