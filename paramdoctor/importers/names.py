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
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from paramdoctor import keys

EVAL, STEP, AUTO = "eval", "step", "auto"
LR = "lr"  # pseudo-key: a learning rate, stored under step/lr/<group> or epoch/lr/<group> by level


@dataclass(frozen=True)
class Role:
    """What a source column is: the paramdoctor key it feeds and how often it is logged."""

    key: str
    level: str  # EVAL, STEP or AUTO
    lr_group: str = "default"

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
    **_names(AUTO, keys.TRAIN_LOSS, "train/loss", "train_loss", "training_loss", "trn_loss", "loss", "train/loss_epoch"),
    **_names(EVAL, keys.TRAIN_LOSS, "train_loss_epoch", "training_loss_epoch", "loss_epoch"),
    **_names(STEP, keys.STEP_LOSS, "step/loss", "train_loss_step", "train/loss_step", "training_loss_step", "loss_step"),
    **_names(
        AUTO, keys.TRAIN_ACC, "train/acc", "train_acc", "train_accuracy", "training_accuracy", "accuracy", "acc",
        "sparse_categorical_accuracy", "categorical_accuracy", "binary_accuracy",
    ),
    **_names(EVAL, keys.TRAIN_ACC, "train_acc_epoch", "train_accuracy_epoch", "train/acc_epoch"),
    **_names(
        EVAL, keys.VAL_LOSS, "val/loss", "val_loss", "valid_loss", "validation_loss", "eval_loss", "eval/loss",
        "valid/loss", "val_loss_epoch", "val/loss_epoch",
    ),
    **_names(
        EVAL, keys.VAL_ACC, "val/acc", "val_acc", "val_accuracy", "valid_acc", "valid_accuracy", "validation_accuracy",
        "validation_acc", "eval_accuracy", "eval_acc", "eval/accuracy", "eval/acc", "val_acc_epoch", "val/acc_epoch",
        "val_sparse_categorical_accuracy", "val_categorical_accuracy", "val_binary_accuracy",
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

STEP_COLUMNS = ("step", "global_step", "current_steps", "iteration", "iter", "trainer/global_step", "_step")
EPOCH_COLUMNS = ("epoch", "epochs")

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
    """The role of a column name used by Lightning, Keras or a hand-written log; None when unknown."""
    lowered = name.strip().lower()
    role = GENERIC_ROLES.get(lowered) or GENERIC_ROLES.get(re.sub(r"[\s\-]+", "_", lowered))  # "Train Loss", "val-acc"
    if role is not None:
        return role
    return lr_role(name)


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
