"""Metric keys and tag names: the contract between collect, record and decide.

Epoch-level series use the epoch number as MLflow step, 1-based (epoch 1 is the
first completed epoch). Step-level series use the optimizer step, 1-based.
Keys obey MLflow's name rules (letters, digits, ``_ - . /`` and spaces).
"""

from __future__ import annotations

import re

RUN_STATES = ("RUNNING", "FINISHED", "FAILED", "KILLED", "UNKNOWN")  # MLflow's run states, plus "unknown" for logs

# --- per epoch (step = epoch number, 1-based) -------------------------------
TRAIN_LOSS = "train/loss"
TRAIN_ACC = "train/acc"
VAL_LOSS = "val/loss"
VAL_ACC = "val/acc"
EPOCH_TIME = "epoch/time_s"
EPOCH_THROUGHPUT = "epoch/samples_per_s"
EPOCH_LR_PREFIX = "epoch/lr/"  # + group name: LR in effect at the end of the epoch

# --- per optimizer step (step = optimizer step, 1-based) --------------------
STEP_LOSS = "step/loss"
STEP_GRAD_NORM = "step/grad_norm"  # global L2 norm of all gradients, before clipping
STEP_LR_PREFIX = "step/lr/"  # + group name


def step_lr(group: str) -> str:
    return f"{STEP_LR_PREFIX}{group}"


def epoch_lr(group: str) -> str:
    return f"{EPOCH_LR_PREFIX}{group}"


# --- per layer group, every ``telemetry_every_n_steps`` steps ----------------
TELEMETRY_PREFIX = "telemetry/"
TELEMETRY_GRAD_NORM = "grad_norm"  # L2 norm of the group's gradients
TELEMETRY_UPDATE_RATIO = "update_ratio"  # ||w_after - w_before|| / ||w_before||
TELEMETRY_DRIFT = "drift"  # ||w - w_initial|| / ||w_initial||
TELEMETRY_FIELDS = (TELEMETRY_GRAD_NORM, TELEMETRY_UPDATE_RATIO, TELEMETRY_DRIFT)


def telemetry(group: str, field: str) -> str:
    return f"{TELEMETRY_PREFIX}{group}/{field}"


def parse_telemetry(key: str) -> tuple[str, str] | None:
    """``telemetry/backbone.layer1/drift`` -> ``("backbone.layer1", "drift")``."""
    if not key.startswith(TELEMETRY_PREFIX):
        return None
    group, _, field = key[len(TELEMETRY_PREFIX) :].rpartition("/")
    if not group or field not in TELEMETRY_FIELDS:
        return None
    return group, field


# --- summary metrics written once at the end -------------------------------
BEST_EPOCH = "best/epoch"
BEST_VALUE = "best/value"  # the monitored metric at the best epoch

# --- tags ---------------------------------------------------------------------
TAG_VERSION = "paramdoctor.version"
TAG_DATASET = "paramdoctor.dataset"
TAG_MODEL = "paramdoctor.model"
TAG_NUM_CLASSES = "paramdoctor.num_classes"
TAG_STOP_REASON = "paramdoctor.stop_reason"
TAG_FAILURE = "paramdoctor.failure"  # one line: why a FAILED run failed
TAG_MONITOR = "paramdoctor.monitor"  # e.g. "val/acc"
TAG_MODE = "paramdoctor.mode"  # "max" or "min"
TAG_STATUS = "paramdoctor.status"  # written by diagnose: healthy | findings
TAG_FINDINGS = "paramdoctor.findings"  # written by diagnose: comma-separated rule codes
TAG_SOURCE = "paramdoctor.source"  # which tool produced the curves (paramdoctor, hf_trainer, ...)
TAG_STEPS_PER_EPOCH = "paramdoctor.steps_per_epoch"  # optimizer steps in one epoch
TAG_TRAIN_SAMPLES = "paramdoctor.train_samples"  # samples in the training split
TAG_WORLD_SIZE = "paramdoctor.world_size"  # processes of a torchrun job (its batch is split over them)
TAG_DIST_BACKEND = "paramdoctor.distributed_backend"  # nccl or gloo
TAG_X_UNIT = "paramdoctor.x_unit"  # "epoch" or "step": how the evaluation series are indexed
TAG_PARENT_RUN = "mlflow.parentRunId"
TAG_SPLIT = "paramdoctor.split"  # JSON: dataset, fingerprint, seed, val_fraction, subset of the train/val split
TAG_CHECKPOINT_DIR = "paramdoctor.checkpoint_dir"  # absolute directory of last.pt and best.pt (train --resume)
TAG_HEARTBEAT = "paramdoctor.heartbeat"  # unix seconds of the trainer's latest sign of life
TAG_HEARTBEAT_EVERY = "paramdoctor.heartbeat_every_s"  # how often the heartbeat is written
TAG_RESUMES = "paramdoctor.resumes"  # how many times the run was carried on with train --resume

_SAFE = re.compile(r"[^A-Za-z0-9_\-./ ]")

# Which way a metric improves, read from the words of its name (split at separators and camelCase; each
# word also without trailing digits, so "hits10" reads as "hits"). Any error word makes it "min" ("dice_loss",
# "top1_err"); else a score word makes it "max"; else the direction is unknown (None).
_MIN_WORDS = frozenset(
    {"loss", "losses", "err", "error", "errors", "mse", "mae", "rmse", "mape", "smape", "msle", "medae", "wer", "cer",
     "perplexity", "ppl", "nll", "dist", "distance", "fpr", "miss"}
)
_MAX_WORDS = frozenset(
    {"acc", "accs", "accuracy", "accuracies", "f1", "auc", "auroc", "precision", "prec", "recall", "iou", "miou", "map",
     "ap", "dice", "cos", "cosine", "sim", "similarity", "score", "r2", "bleu", "rouge", "mrr", "hits", "top1", "top5",
     "ssim", "psnr", "kappa", "mcc"}
)
CAMEL_HUMP = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_WORD_SPLIT = re.compile(r"[^a-z0-9]+")


def metric_words(name: str) -> list[str]:
    """The words of a metric name: ``val/topOneErr`` -> ``["val", "top", "one", "err"]``."""
    return [w for w in _WORD_SPLIT.split(CAMEL_HUMP.sub(" ", name).lower()) if w]


def metric_mode(name: str) -> str | None:
    """"min" for a loss or error metric, "max" for a score, None when the name does not say (``val/cer`` -> "min")."""
    words = set(metric_words(name)) | set(_WORD_SPLIT.split(name.lower()))  # "mIoU" is both "m", "io", "u" and "miou"
    candidates = words | {w.rstrip("0123456789") for w in words}
    if candidates & _MIN_WORDS:
        return "min"
    if candidates & _MAX_WORDS:
        return "max"
    return None


def safe_key(name: str) -> str:
    """Make a layer or group name usable inside an MLflow metric key."""
    return _SAFE.sub("_", name)
