"""Lightning's ``CSVLogger`` ``metrics.csv`` (``lightning_logs/version_N/metrics.csv``).

Every ``log_metrics`` call is one row with ``epoch`` (0-based) and ``step``
(global step) and only the values logged then: training rows every
``log_every_n_steps`` (``train_loss`` or ``train_loss_step``), one row per
validation (``val_loss``, ``val_acc``), one at each epoch end
(``train_loss_epoch``). ``LearningRateMonitor`` adds ``lr-<Optimizer>`` (and
``/pgN`` per parameter group). Several validation dataloaders log
``val_loss/dataloader_idx_N``: one evaluation set each. Other metrics keep
their names (``val_f1`` is ``val/f1``, ``train_f1_epoch`` is ``train/f1``).
``hparams.yaml`` beside it holds the module's saved hyperparameters. The
epoch-end row may carry a step one lower than the validation row before it,
so only an epoch going down starts a new run.
"""

from __future__ import annotations

from pathlib import Path

from paramdoctor.importers.eval_sets import with_eval_sets
from paramdoctor.importers.names import table_role
from paramdoctor.importers.reading import CsvTable
from paramdoctor.importers.rows import (
    csv_columns, read_sidecar_yaml, roles_for, scalar_config, scalar_params, without_worded_columns,
)
from paramdoctor.importers.table import INDEX0, ParsedLog


def parse(path: Path, table: CsvTable, mapping: dict[str, str] | None) -> ParsedLog:
    roles = roles_for(table.header, with_eval_sets(table_role, table.header), mapping, path)
    roles = without_worded_columns(roles, table)
    rows = csv_columns(table, roles, ("step", "epoch"), path)
    hparams = read_sidecar_yaml(path.parent / "hparams.yaml")
    meta = {}
    if isinstance(hparams.get("max_epochs"), int):
        meta["max_epochs"] = hparams["max_epochs"]
    return ParsedLog(
        tool="lightning",
        rows=rows,
        roles=roles,
        step_col="step",
        epoch_col="epoch",
        epoch_kind=INDEX0,
        restarts=set(table.restarts),
        params=scalar_params(hparams),
        config=scalar_config(hparams),
        meta=meta,
        columns=[c for c in table.header if c],
        run_counter="epoch",  # the step may go back by one: epoch-end rows carry the step before the validation's
    )
