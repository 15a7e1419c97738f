"""``load_foreign``: any supported log file or output folder -> one RunRecord with paramdoctor keys."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable

from paramdoctor import keys
from paramdoctor.errors import InputError
from paramdoctor.importers import (
    detectron2, fastai, generic, hf_trainer, keras, lightning, llamafactory, mmcv_log, mmengine, nested_json, tensorboard,
    timm, ultralytics, wandb,
)
from paramdoctor.importers.detect import ImportedFormat, locate_log, sniff
from paramdoctor.importers.names import COUNTER_KEYS, pick_monitor
from paramdoctor.importers.reading import printable, read_text
from paramdoctor.importers.table import ParsedLog, assemble, split_runs
from paramdoctor.record import RunRecord

_MAP_KEY = re.compile(r"^(train|val|step|epoch)/[A-Za-z0-9_\-./ ]+$")
_COUNTER_FORMATS = (ImportedFormat.CSV, ImportedFormat.JSONL)  # the formats whose x counter a user may name
_STANDARD_NAMES = {
    "trainer_state.json", "trainer_log.jsonl", "metrics.csv", "results.csv", "history.json", "summary.csv", "metrics.json",
    "history.csv",
}

_PARSERS: dict[ImportedFormat, Callable[[Path, Any, dict[str, str] | None], ParsedLog]] = {
    ImportedFormat.HF_TRAINER_STATE: hf_trainer.parse,
    ImportedFormat.LLAMAFACTORY_LOG: llamafactory.parse,
    ImportedFormat.LIGHTNING_CSV: lightning.parse,
    ImportedFormat.KERAS_CSV: keras.parse_csv,
    ImportedFormat.KERAS_HISTORY: keras.parse_history,
    ImportedFormat.ULTRALYTICS_CSV: ultralytics.parse,
    ImportedFormat.CSV: generic.parse_csv,
    ImportedFormat.JSONL: lambda path, lines, mapping: generic.parse_objects(path, lines.objects, mapping),
    ImportedFormat.JSON_HISTORY: nested_json.parse,
    ImportedFormat.TIMM_SUMMARY: timm.parse,
    ImportedFormat.MMENGINE_SCALARS: mmengine.parse,
    ImportedFormat.MMCV_LOG: mmcv_log.parse,
    ImportedFormat.DETECTRON2_METRICS: detectron2.parse,
    ImportedFormat.FASTAI_CSV: fastai.parse,
    ImportedFormat.WANDB_PANEL: wandb.parse_panel,
    ImportedFormat.WANDB_HISTORY: wandb.parse_history,
}


def load_foreign(
    path: str | Path, *, run_index: int | None = None, mapping: dict[str, str] | None = None
) -> RunRecord:
    """The run logged in ``path`` (a log file or a tool's output folder) as a record with paramdoctor keys.

    The format is recognised from the content. A file holding several runs
    appended one after another gives the last one, or the one ``run_index``
    names (0-based; negative counts from the end); ``meta["run_index"]`` and
    ``meta["runs_in_file"]`` say which. ``mapping`` (``{"val/acc": "eval_top1"}``)
    names the columns that feed paramdoctor keys when their names are not
    recognised, and wins over the names that are.
    """
    mapping = check_mapping(mapping)
    given = Path(path).expanduser()
    file = locate_log(path)
    if tensorboard.is_event_file(file):
        fmt = ImportedFormat.TENSORBOARD
        files = tensorboard.event_files(file.parent) if given.is_dir() else [file]
        log = tensorboard.parse(file, files, mapping)
    else:
        fmt, payload = sniff(read_text(file), file)
        if fmt is ImportedFormat.PARAMDOCTOR_EXPORT:
            return RunRecord.from_dict(payload, where=str(file))
        counters = sorted(set(mapping or {}) & set(COUNTER_KEYS))
        if counters and fmt not in _COUNTER_FORMATS:
            raise InputError(
                f"{file}: --map {counters[0]}=...: only a plain CSV or JSON-lines log takes its {counters[0]} counter "
                f"from --map; this {fmt.tool} log names its own"
            )
        log = _PARSERS[fmt](file, payload, mapping)
    if fmt is ImportedFormat.HF_TRAINER_STATE and _beside_llamafactory_log(file):
        log.tool = "llamafactory"  # LLaMA-Factory trains with HF's Trainer and leaves both files
    runs = split_runs(log)
    if not runs:
        raise InputError(_no_curves(file, log, mapping))
    index = _pick(run_index, len(runs), file)
    assembled = assemble(runs[index], log)
    if not assembled.series:
        raise InputError(_no_curves(file, log, mapping))
    meta: dict[str, Any] = {**log.meta, **assembled.meta}
    if not meta.get("monitor") and keys.VAL_LOSS not in assembled.series and keys.VAL_ACC not in assembled.series:
        in_file_order = dict.fromkeys(role.eval_key() for role in log.roles.values())
        picked = pick_monitor(k for k in in_file_order if k and k in assembled.series)
        if picked is not None:  # no val/loss or val/acc: the first validation metric whose direction its name says
            meta["monitor"], meta["mode"] = picked
    meta.update(run_index=index, runs_in_file=len(runs), source_file=str(file), format=fmt.value)
    finished = meta.pop("finished", False) and index == len(runs) - 1
    run_name = _run_name(given, file)
    if log.run_names and len(log.run_names) == len(runs):
        run_name = log.run_names[index]
        meta["run_names"] = list(log.run_names)
    return RunRecord(
        series=assembled.series,
        config=dict(log.config),
        params=dict(log.params),
        tags={keys.TAG_SOURCE: log.tool},
        meta=meta,
        run_name=run_name,
        status="FINISHED" if finished else "UNKNOWN",
        source=log.tool,
        x_unit=assembled.x_unit,
    )


def check_mapping(mapping: dict[str, str] | None) -> dict[str, str] | None:
    """``mapping`` when every key is a paramdoctor metric key (or ``step``/``epoch``: the x counter) and every column a non-empty name."""
    if not mapping:
        return None
    out: dict[str, str] = {}
    for key, column in mapping.items():
        key, column = str(key).strip(), str(column).strip()
        if not _MAP_KEY.match(key) and key not in COUNTER_KEYS:
            raise InputError(
                f"--map {printable(key)}={printable(column)}: '{printable(key)}' is not a paramdoctor metric key "
                "(use train/loss, train/acc, val/loss, val/acc, step/loss, step/grad_norm or step/lr/default; "
                "step or epoch to name the x counter)"
            )
        if not column:
            raise InputError(f"--map {key}=: the column name is empty (write --map {key}=COLUMN)")
        out[key] = column
    return out


def _pick(run_index: int | None, count: int, file: Path) -> int:
    if run_index is None:
        return count - 1
    if not -count <= run_index < count:
        runs = "1 run" if count == 1 else f"{count} runs"
        raise InputError(
            f"{file}: --run-index {run_index} is out of range: the file holds {runs} "
            f"(use 0..{count - 1}, or -1 for the last)"
        )
    return run_index % count


def _beside_llamafactory_log(file: Path) -> bool:
    folder = file.parent
    return (folder / "trainer_log.jsonl").is_file() or (folder.parent / "trainer_log.jsonl").is_file()


def _run_name(given: Path, file: Path) -> str:
    if given.is_dir():
        return given.resolve().name or file.stem
    if file.name in _STANDARD_NAMES:
        return file.resolve().parent.name or file.stem
    if file.name == "scalars.json" and file.parent.name == "vis_data":  # MMEngine: <work_dir>/<timestamp>/vis_data/
        return file.resolve().parent.parent.name or file.stem
    if file.name.startswith(tensorboard.PREFIX):
        return file.resolve().parent.name or file.stem
    return file.stem


def _no_curves(file: Path, log: ParsedLog, mapping: dict[str, str] | None) -> str:
    columns = [c for c in log.columns if c not in (log.step_col, log.epoch_col)]
    if not columns:
        hint = "check the --map column names" if mapping else "name the columns with --map train/loss=COLUMN --map val/loss=COLUMN"
        return f"{file}: no training curves found ({hint})"
    shown = ", ".join(printable(c, 40) for c in columns[:25]) + (", ..." if len(columns) > 25 else "")
    if mapping:
        return f"{file}: no training curves found in the mapped columns (check the --map column names; its columns: {shown})"
    if all(c.isdigit() for c in columns):
        return (
            f"{file}: no training curves found: the values have no names, only positions ({shown}); say which is "
            f"which, e.g. {_map_example(columns)}"
        )
    return (
        f"{file}: no training curves found: no column name says which curve it holds (its columns: {shown}); "
        f"say which is which, e.g. {_map_example(columns)}"
    )


def _map_example(columns: list[str]) -> str:
    """``--map`` options naming ``columns`` in a plausible order (loss-like names first), as a template to correct."""
    pairs: list[tuple[str, str]] = []
    for word, targets in (("loss", (keys.TRAIN_LOSS, keys.VAL_LOSS)), ("acc", (keys.TRAIN_ACC, keys.VAL_ACC))):
        pairs += zip(targets, [c for c in columns if word in c.lower()])
    if not pairs and len(columns) > 2 and all(c.isdigit() for c in columns):  # [step, train loss, val loss] rows
        pairs = list(zip(("step", keys.TRAIN_LOSS, keys.VAL_LOSS), columns))
    if not pairs:
        pairs = list(zip((keys.TRAIN_LOSS, keys.VAL_LOSS), columns))
    return " ".join(f"--map {key}={_quoted(printable(column, 40))}" for key, column in pairs)


def _quoted(column: str) -> str:
    return f"'{column}'" if re.search(r"[^A-Za-z0-9_\-./]", column) else column
