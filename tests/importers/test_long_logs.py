"""Long logs import in linear time and bounded memory: a CSV is read column by column, not as a dict per row."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from paramdoctor.errors import InputError
from paramdoctor.importers import load_foreign

STEPS = 200_000
PER_EPOCH = 1_000


def _lightning_csv(path, *, word_at: int | None = None) -> None:
    """A Lightning ``metrics.csv``: a training row per step, a validation row at each epoch's end."""
    rng = np.random.default_rng(0)
    loss = np.round(2.0 * np.exp(-np.arange(STEPS) / 50_000) + 0.1 * rng.random(STEPS), 5)
    lines = ["epoch,step,train_loss_step,lr-AdamW,val_loss,val_acc"]
    for step in range(STEPS):
        epoch = step // PER_EPOCH
        cell = "oops" if step == word_at else repr(float(loss[step]))
        lines.append(f"{epoch},{step},{cell},0.001,,")
        if step % PER_EPOCH == PER_EPOCH - 1:
            lines.append(f"{epoch},{step},,,{0.5 + 1.0 / (epoch + 1):.4f},0.9")
    path.write_text("\n".join(lines) + "\n")


def test_a_log_of_200k_steps_imports_in_bounded_memory_and_names_the_line_of_a_word(tmp_path):
    small = tmp_path / "small" / "metrics.csv"
    small.parent.mkdir()
    small.write_text("epoch,step,train_loss_step,val_loss\n0,0,1.0,\n0,1,,0.5\n")
    load_foreign(small)  # what the first import allocates once (modules, caches) is not the log's
    path = tmp_path / "metrics.csv"
    _lightning_csv(path)
    tracemalloc.start()
    try:
        record = load_foreign(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # a 6 MB file: a few float arrays per column, not 200,000 lists of strings and dicts of floats (over 200 MiB)
    assert peak < 120 * 2**20, f"peak {peak / 2**20:.0f} MiB"
    step_loss, val = record.series["step/loss"], record.series["val/loss"]
    assert len(step_loss) == STEPS and step_loss.steps[0] == 0 and step_loss.steps[-1] == STEPS - 1
    assert len(val) == STEPS // PER_EPOCH and val.steps[0] == 1 and val.values[0] == pytest.approx(1.5)
    assert len(record.series["train/loss"]) == STEPS // PER_EPOCH and record.meta["epochs_run"] == STEPS // PER_EPOCH

    _lightning_csv(path, word_at=150_000)  # a word in the third chunk of rows read at a time: still its own line
    line = 1 + 150_000 + 150_000 // PER_EPOCH + 1  # header, training rows, validation rows before it, 1-based
    with pytest.raises(InputError, match=rf"line {line}: 'train_loss_step' is 'oops', expected a number"):
        load_foreign(path)


def test_sidecar_settings_with_duplicate_keys_are_not_trusted(tmp_path):
    rows = "".join(f"{e},{10 * e + 9},{1.0 - 0.1 * e},\n{e},{10 * e + 9},,{1.1 - 0.1 * e}\n" for e in range(3))
    (tmp_path / "metrics.csv").write_text("epoch,step,train_loss,val_loss\n" + rows)  # Lightning's CSVLogger
    (tmp_path / "hparams.yaml").write_text("lr: 0.1\nmax_epochs: 5\nlr: 0.2\n")
    record = load_foreign(tmp_path / "metrics.csv")
    assert record.params == {} and "max_epochs" not in record.meta  # which lr was meant? neither: the file is ignored
    (tmp_path / "hparams.yaml").write_text("lr: 0.1\nmax_epochs: 5\n")
    record = load_foreign(tmp_path / "metrics.csv")
    assert record.params["lr"] == "0.1" and record.meta["max_epochs"] == 5
