"""Other tools' metric names -> paramdoctor keys.

Each tool names the same curves differently: Hugging Face's Trainer logs
``loss`` (training, every ``logging_steps``), ``eval_loss``, ``eval_accuracy``,
``learning_rate``, ``grad_norm``; Lightning's loggers ``train_loss`` (with
``_step``/``_epoch`` suffixes when logged both ways), ``val_loss``, ``val_acc``
and ``lr-Adam`` from ``LearningRateMonitor``; Keras ``loss``, ``accuracy``,
``val_loss``, ``val_accuracy``, ``learning_rate``. A :class:`Role` says which
paramdoctor key a column feeds and whether it is logged once per evaluation
(``eval``), every few optimizer steps (``step``), or either (``auto``: decided
from how often it appears).

Hand-written logs add their own habits, read by :func:`table_role` and
:func:`with_bare_splits`: ``TrainLoss``/``ValAcc`` (camelCase), plurals
(``train_losses``, ``val_accuracies``), bare split names (a column ``train``
or ``valid`` is that split's loss when no other column is), ``dev`` for the
validation split, ``avg_val_loss``, any other ``val_<metric>`` /
``valid_<metric>`` / ``eval_<metric>`` / ``dev_<metric>`` (``val/<metric>``) or
``train_<metric>`` (``train/<metric>``), and Keras's ``X`` beside ``val_X``
(:func:`with_train_twins`). Those guesses are ``Role.guessed``: a guessed
column holding words is left out, not an error.

Which way a metric improves (:func:`metric_mode`) is read from the words of
its name (split at ``_``, ``-``, ``/``, ``.``, ``@``, spaces and camelCase
humps; a word is also tried without its trailing digits, so ``hits10`` is
``hits`` and ``mAP50`` is ``map``):

=====  ==========================================================================
mode   words
=====  ==========================================================================
min    loss(es), err, error(s), mse, mae, rmse, mape, smape, msle, medae, wer,
       cer, perplexity, ppl, nll, dist, distance, fpr, miss
max    acc, accuracy, f1, auc, auroc, precision, prec, recall, iou, miou, map,
       ap, dice, cos, cosine, sim, similarity, score, r2, bleu, rouge, mrr, hits,
       top1, top5, ssim, psnr, kappa, mcc
=====  ==========================================================================

A name holding a *min* word is *min* even when it also holds a *max* word
(``dice_loss``, ``top1_err``); a name with neither has no known direction and
is never made the monitored metric (:func:`pick_monitor`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Iterable

from paramdoctor import keys

EVAL, STEP, AUTO = "eval", "step", "auto"
LR = "lr"  # pseudo-key: a learning rate, stored under step/lr/<group> or epoch/lr/<group> by level


@dataclass(frozen=True)
class Role:
    """What a source column is: the paramdoctor key it feeds and how often it is logged."""

    key: str
    level: str  # EVAL, STEP or AUTO
    lr_group: str = "default"
    guessed: bool = False  # read from a naming habit, not a known name: a column of words drops it instead of failing

    def step_key(self) -> str | None:
        """The key for values logged per optimizer step (None: such values are not kept)."""
        if self.key == LR:
            return keys.step_lr(self.lr_group)
        if self.key == keys.TRAIN_LOSS:
            return keys.STEP_LOSS
        if self.key.startswith("step/"):
            return self.key
        return None

    def eval_key(self) -> str | None:
        """The key for values logged once per evaluation (None: such values are not kept)."""
        if self.key == LR:
            return keys.epoch_lr(self.lr_group)
        return None if self.key.startswith("step/") else self.key


def _names(level: str, key: str, *names: str) -> dict[str, Role]:
    return {n: Role(key, level) for n in names}


# Names shared by tools that log tables of curves (Lightning, Keras, generic CSV/JSONL).
GENERIC_ROLES: dict[str, Role] = {
    **_names(
        AUTO, keys.TRAIN_LOSS, "train/loss", "train_loss", "training_loss", "trn_loss", "loss", "train/loss_epoch",
        "train_losses", "training_losses", "losses",
    ),
    **_names(EVAL, keys.TRAIN_LOSS, "train_loss_epoch", "training_loss_epoch", "loss_epoch"),
    **_names(STEP, keys.STEP_LOSS, "step/loss", "train_loss_step", "train/loss_step", "training_loss_step", "loss_step"),
    **_names(
        AUTO, keys.TRAIN_ACC, "train/acc", "train_acc", "train_accuracy", "training_accuracy", "accuracy", "acc",
        "sparse_categorical_accuracy", "categorical_accuracy", "binary_accuracy", "train_accs", "train_accuracies",
        "training_accuracies",
    ),
    **_names(EVAL, keys.TRAIN_ACC, "train_acc_epoch", "train_accuracy_epoch", "train/acc_epoch"),
    **_names(
        EVAL, keys.VAL_LOSS, "val/loss", "val_loss", "valid_loss", "validation_loss", "eval_loss", "eval/loss",
        "valid/loss", "val_loss_epoch", "val/loss_epoch", "val_losses", "valid_losses", "validation_losses", "dev_loss",
    ),
    **_names(
        EVAL, keys.VAL_ACC, "val/acc", "val_acc", "val_accuracy", "valid_acc", "valid_accuracy", "validation_accuracy",
        "validation_acc", "eval_accuracy", "eval_acc", "eval/accuracy", "eval/acc", "val_acc_epoch", "val/acc_epoch",
        "val_sparse_categorical_accuracy", "val_categorical_accuracy", "val_binary_accuracy", "val_accs",
        "val_accuracies", "valid_accs", "valid_accuracies", "validation_accuracies", "dev_acc", "dev_accuracy",
    ),
    **_names(STEP, keys.STEP_GRAD_NORM, "step/grad_norm", "grad_norm", "gradient_norm", "grad_norm_step", "train/grad_norm"),
    **_names(AUTO, LR, "learning_rate", "lr", "train/learning_rate", "train/lr", "lr_epoch"),
}

# Hugging Face Trainer's ``log_history`` / ``report_to`` names.
HF_SKIP = frozenset(
    {
        "eval_runtime", "eval_samples_per_second", "eval_steps_per_second", "eval_model_preparation_time",
        "train_runtime", "train_samples_per_second", "train_steps_per_second", "train_loss", "total_flos",
        "num_input_tokens_seen", "epoch", "step", "eval_jit_compilation_time",
    }
)
HF_ROLES: dict[str, Role] = {
    "loss": Role(keys.STEP_LOSS, STEP),
    "learning_rate": Role(LR, STEP),
    "grad_norm": Role(keys.STEP_GRAD_NORM, STEP),
    "eval_loss": Role(keys.VAL_LOSS, EVAL),
    "eval_accuracy": Role(keys.VAL_ACC, EVAL),
    "eval_acc": Role(keys.VAL_ACC, EVAL),
}

COUNTER_KEYS = ("step", "epoch")  # --map step=COLUMN / epoch=COLUMN: the x counter of a plain CSV or JSONL log
STEP_COLUMNS = ("step", "global_step", "current_steps", "iteration", "iter", "trainer/global_step", "_step")
EPOCH_COLUMNS = ("epoch", "epochs", "ep")

_LIGHTNING_LR = re.compile(r"^lr-[A-Za-z0-9_]+(?:/(?P<group>[A-Za-z0-9_.\-]+))?(?P<suffix>_step|_epoch)?$")
_LR_NAMES = frozenset(
    {"lr", "learning_rate", "train/lr", "train/learning_rate", "optimizer/lr", "optimizer/learning_rate", "optim/lr", "opt/lr"}
)
_GROUP_LR = re.compile(
    r"^(?:(?:optimizer|optim|train)/)?(?:lr|learning_rate)/(?P<group>[A-Za-z0-9_.\-]+)$|^(?P<optim>[A-Za-z0-9_\-]+)\.lr$"
)
_NOT_LR_SUFFIXES = ("-momentum", "-weight_decay", "-beta1", "-beta2")


def hf_role(name: str) -> Role | None:
    """The role of a Hugging Face Trainer log name; any other ``eval_<metric>`` becomes ``val/<metric>``."""
    if name in HF_ROLES:
        return HF_ROLES[name]
    if name in HF_SKIP:
        return None
    if name.startswith("eval_") and len(name) > 5:
        return Role(f"val/{keys.safe_key(name[5:])}", EVAL)
    return None


def hf_rewritten_role(name: str) -> Role | None:
    """A Hugging Face name after ``report_to`` rewrote it for TensorBoard or W&B: ``eval_X`` -> ``eval/X``, ``X`` -> ``train/X``."""
    if name.startswith("eval/"):
        return hf_role("eval_" + name[5:])
    if name.startswith("train/"):
        inner = name[6:]
        return None if inner in ("epoch", "global_step") else hf_role(inner)
    return generic_role(name)


def generic_role(name: str) -> Role | None:
    """The role of a column name used by Lightning, Keras or a hand-written log; None when unknown.

    Spellings tried: as written, ``Train Loss``/``val-acc`` (spaces, hyphens),
    ``TrainLoss``/``ValAcc`` (camelCase), and without an ``avg_``/``average_``/
    ``mean_`` prefix (``avg_val_loss`` is the validation loss). Not ``epoch_``:
    Keras's TensorBoard callback writes ``epoch_loss`` for both splits.
    """
    for spelling in _spellings(name):
        role = GENERIC_ROLES.get(spelling)
        if role is not None:
            return role
    return lr_role(name)


def _spellings(name: str) -> list[str]:
    text = name.strip()
    lowered = text.lower()
    snake = re.sub(r"[\s\-]+", "_", lowered)
    camel = re.sub(r"[\s\-]+", "_", keys.CAMEL_HUMP.sub("_", text)).lower()
    spellings = [lowered, snake, camel]
    spellings += [s[m.end() :] for s in (snake, camel) if (m := _AVERAGED.match(s)) and len(s) > m.end()]
    return list(dict.fromkeys(spellings))


def table_role(name: str) -> Role | None:
    """:func:`generic_role`, else a hand-written log's ``val_<metric>`` or ``train_<metric>`` (:func:`metric_role`)."""
    return generic_role(name) or metric_role(name)


def metric_role(name: str) -> Role | None:
    """``val_f1``, ``valid_dice``, ``eval_wer``, ``val/mrr`` -> ``val/<metric>``; ``train_cos`` -> ``train/<metric>``.

    A guess from the naming habit, so the role is ``guessed``. Counters,
    timings and sizes (``val_time``, ``train_samples``, ``eval_runtime``) are
    not metrics; accuracy names become ``val/acc`` / ``train/acc``.
    Lightning's ``train_f1_epoch`` is ``train/f1``; its ``train_f1_step`` is
    not kept (only a loss is kept per step).
    """
    text = name.strip()
    averaged = _AVERAGED.match(text.lower())
    if averaged:  # avg_val_f1
        text = text[averaged.end() :]
    for pattern, split in ((_VAL_METRIC, "val"), (_TRAIN_METRIC, "train")):
        match = pattern.match(text)
        if match is None:
            continue
        metric = match.group("metric").strip(" _-")
        if metric.endswith("_step"):  # Lightning's per-step copy: only a loss is kept per step
            return None
        level = EVAL if split == "val" or metric.endswith("_epoch") else AUTO
        metric = metric.removesuffix("_epoch")
        if not metric or "/" in metric or not metric[0].isalpha() or not _is_metric(metric):
            return None
        if split == "val":
            return Role(val_metric_key(metric), EVAL, guessed=True)
        if metric.lower() in _ACCURACY_METRICS:
            return Role(keys.TRAIN_ACC, level, guessed=True)
        return Role("train/" + keys.safe_key(metric), level, guessed=True)
    return None


def _is_metric(metric: str) -> bool:
    words = _words(metric)
    return metric_mode(metric) is not None or not (set(words) & _NOT_METRIC_WORDS)


def with_train_twins(role_of: "Callable[[str], Role | None]", columns: Iterable[str]):
    """``role_of`` that also reads ``X`` as the training ``X`` when ``val_X`` is a validation metric (Keras's naming).

    ``auc`` beside ``val_auc`` is ``train/auc``; ``precision`` beside
    ``val_precision`` is ``train/precision``.
    """
    names = set(columns)

    def role(name: str) -> Role | None:
        found = role_of(name)
        if found is not None or f"val_{name}" not in names:
            return found
        validation = role_of(f"val_{name}")
        if validation is None or not validation.key.startswith("val/") or validation.key.count("/") != 1:
            return None
        if validation.key == keys.VAL_LOSS:
            return Role(keys.TRAIN_LOSS, AUTO, guessed=True)
        key = keys.TRAIN_ACC if validation.key == keys.VAL_ACC else "train/" + validation.key[4:]
        return Role(key, AUTO, guessed=True)

    return role


def with_bare_splits(role_of: "Callable[[str], Role | None]", columns: Iterable[str], mapping: dict[str, str] | None = None):
    """``role_of`` that also reads a bare ``train`` / ``val`` / ``valid`` / ``validation`` / ``dev`` column as that split's loss.

    Only when no other column (and no ``--map``) already feeds that loss, and
    only the first such column per split.
    """
    names = list(dict.fromkeys(columns))
    claimed = {role.key for role in (role_of(c) for c in names) if role is not None} | set((mapping or {}).keys())
    bare: dict[str, Role] = {}
    for column in names:
        key = _BARE_SPLITS.get(column.strip().lower())
        if key is not None and key not in claimed and role_of(column) is None:
            bare[column] = Role(key, AUTO if key == keys.TRAIN_LOSS else EVAL, guessed=True)
            claimed.add(key)

    def role(name: str) -> Role | None:
        return bare.get(name) or role_of(name)

    return role


metric_mode = keys.metric_mode  # one direction table for the importers and the engine


def pick_monitor(series_keys: Iterable[str]) -> tuple[str, str] | None:
    """The first plain ``val/<metric>`` among ``series_keys`` whose direction is known, with its mode.

    For logs with neither ``val/loss`` nor ``val/acc``; a metric of unknown
    direction is never picked (a wrong mode would turn every finding around).
    """
    for key in series_keys:
        match = _PLAIN_VAL.match(key)
        if match is None:
            continue
        mode = metric_mode(match.group("metric"))
        if mode is not None:
            return key, mode
    return None


_words = keys.metric_words
_PLAIN_VAL = re.compile(r"^val/(?P<metric>[^/]+)$")
_VAL_METRIC = re.compile(r"^(?:[Vv]alidation|[Vv]alid|[Vv]al|[Ee]val|[Dd]ev)(?:[_\-\s/]|(?=[A-Z]))(?P<metric>.+)$")
_AVERAGED = re.compile(r"^(?:avg|average|mean)_")
_TRAIN_METRIC = re.compile(r"^(?:[Tt]raining|[Tt]rain)(?:[_\-\s/]|(?=[A-Z]))(?P<metric>.+)$")
_BARE_SPLITS = {
    "train": keys.TRAIN_LOSS, "training": keys.TRAIN_LOSS, "val": keys.VAL_LOSS, "valid": keys.VAL_LOSS,
    "validation": keys.VAL_LOSS, "dev": keys.VAL_LOSS,
}
# Words that make a ``val_``/``train_`` name a counter, timing or size rather than a metric.
_NOT_METRIC_WORDS = frozenset(
    {"time", "times", "runtime", "duration", "seconds", "sec", "secs", "s", "samples", "sample", "steps", "step", "epoch",
     "epochs", "iter", "iters", "iteration", "iterations", "batch", "batches", "size", "count", "num", "n", "memory",
     "mem", "speed", "throughput", "flos", "tokens", "timestamp", "lr", "second", "split", "frac", "fraction",
     "ratio", "set", "data", "dataset", "file", "path", "dir", "name", "mode"}
)


def lr_role(name: str) -> Role | None:
    """A learning-rate column by any usual name, with its parameter group; None for anything else.

    ``lr``, ``learning_rate``, ``train/lr``, ``optimizer/lr``, Lightning's
    ``lr-AdamW`` and ``lr-SGD/pg1`` (``LearningRateMonitor``; its
    ``lr-Adam-momentum`` and ``-weight_decay`` are not learning rates),
    Ultralytics' ``lr/pg0``, MMEngine's ``<optimizer>.lr`` for several optimizers.
    """
    text = name.strip()
    lowered = text.lower()
    if lowered in _LR_NAMES:
        return Role(LR, AUTO)
    if lowered.endswith(_NOT_LR_SUFFIXES):
        return None
    match = _LIGHTNING_LR.match(text)
    if match:  # LearningRateMonitor: lr-Adam, lr-AdamW/pg1
        level = {"_step": STEP, "_epoch": EVAL}.get(match.group("suffix") or "", AUTO)
        return Role(LR, level, keys.safe_key(match.group("group") or "default"))
    match = _GROUP_LR.match(text)
    if match:  # lr/pg0, optimizer/lr/pg1, generator.lr
        return Role(LR, AUTO, keys.safe_key(match.group("group") or match.group("optim")))
    return None


# Validation metrics that are an accuracy (fraction or percent); anything else keeps its own name.
_ACCURACY_METRICS = frozenset(
    {"acc", "accuracy", "top1", "top-1", "acc1", "top1_acc", "accuracy_top1", "accuracy_top-1", "accuracy/top1", "acc/top1"}
)
# The metric a detection / segmentation / classification tool selects checkpoints by, most specific first.
PRIMARY_METRICS = (
    "acc", "bbox_AP", "coco_bbox_mAP", "bbox_mAP", "segm_AP", "coco_segm_mAP", "segm_mAP", "keypoints_AP", "coco_keypoints_mAP",
    "pascal_voc_mAP", "voc_mAP", "mAP", "sem_seg_mIoU", "mIoU", "panoptic_seg_PQ", "coco_panoptic_PQ",
)


def val_metric_key(metric: str) -> str:
    """The paramdoctor key of a validation metric: ``val/acc`` for an accuracy, else ``val/<metric>``.

    Slashes inside a tool's metric name (``bbox/AP``, ``coco/bbox_mAP``) become
    underscores, because ``val/<a>/<b>`` is the shape of an evaluation set's curve.
    """
    name = metric.strip()
    if name.lower() in _ACCURACY_METRICS:
        return keys.VAL_ACC
    return "val/" + keys.safe_key(name.replace("/", "_"))


def primary_metric(series_keys) -> str | None:
    """The validation metric a tool would select checkpoints by (``val/acc``, ``val/bbox_AP``, ``val/mIoU``...), if logged."""
    present = set(series_keys)
    for name in PRIMARY_METRICS:
        if f"val/{name}" in present:
            return f"val/{name}"
    return None


def mapped_role(key: str) -> Role:
    """The role of a column the user mapped onto paramdoctor ``key`` with ``--map KEY=COLUMN``."""
    if key.startswith(keys.STEP_LR_PREFIX):
        return Role(LR, STEP, key[len(keys.STEP_LR_PREFIX) :])
    if key.startswith(keys.EPOCH_LR_PREFIX):
        return Role(LR, EVAL, key[len(keys.EPOCH_LR_PREFIX) :])
    if key.startswith("step/"):
        return Role(key, STEP)
    if key.startswith("train/"):
        return Role(key, AUTO)
    return Role(key, EVAL)
