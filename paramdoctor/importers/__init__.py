"""Read other tools' training logs into paramdoctor run records.

Hugging Face ``trainer_state.json``, LLaMA-Factory ``trainer_log.jsonl``,
Lightning ``metrics.csv``, Keras ``CSVLogger`` files and ``history`` JSON,
Ultralytics ``results.csv``, TensorBoard event files (Lightning's
``TensorBoardLogger``, HF ``report_to="tensorboard"``), nested JSON histories,
timm ``summary.csv``, MMEngine ``scalars.json`` and mmcv ``*.log.json``,
Detectron2 ``metrics.json``, fastai ``history.csv``, Weights & Biases CSV
exports, the logs training scripts write by hand (pandas ``to_csv`` tables,
``;``- or tab-separated files, dicts of per-epoch lists beside a config,
lists of per-epoch dicts; see :mod:`~paramdoctor.importers.names` for the
names read and the direction of each metric), and any CSV/JSONL of curves
with ``--map``. The format is recognised
from the content; several evaluation sets keep one curve each
(:mod:`~paramdoctor.importers.eval_sets`); every kind of bad input is one
:class:`~paramdoctor.errors.InputError` line. :func:`normalize_metric_names`
does the same renaming for MLflow runs logged by those tools.
"""

from __future__ import annotations

from paramdoctor.importers.detect import ImportedFormat, detect_format, locate_log
from paramdoctor.importers.load import check_mapping, load_foreign
from paramdoctor.importers.mlflow_names import normalize_metric_names
from paramdoctor.importers.reading import MAX_BYTES

__all__ = [
    "ImportedFormat",
    "MAX_BYTES",
    "check_mapping",
    "detect_format",
    "load_foreign",
    "locate_log",
    "normalize_metric_names",
]
