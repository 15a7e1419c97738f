"""The typed training configuration.

Section and key names follow what Lightning and Hugging Face users already know
(``max_epochs``, ``accumulate_grad_batches``, ``gradient_clip_val``,
``EarlyStopping(monitor, mode, patience, min_delta)``, ``weight_decay``,
``warmup_epochs``). Every model forbids unknown keys; validators reject
impossible values with a message that names the value.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

PositiveFloat = float
Precision = Literal["auto", "32", "16-mixed", "bf16-mixed"]


class _Section(BaseModel):
    # NaN and inf are refused everywhere: no setting means "forever" or "undefined"
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class ExperimentConfig(_Section):
    """Where the run is recorded."""

    name: str = Field("paramdoctor", min_length=1, description="MLflow experiment name")
    run_name: str | None = Field(None, description="MLflow run name; generated when empty")


class DataConfig(_Section):
    """Which data, how it is split and batched."""

    dataset: Literal["digits", "cifar10", "cifar100", "imagefolder"] = Field(
        "digits", description="digits ships with scikit-learn (offline); cifar10/100 via torchvision; imagefolder reads data.root"
    )
    root: str | None = Field(None, description="directory of CIFAR files or of an ImageFolder tree")
    download: bool = Field(False, description="download CIFAR when missing (needs network)")
    val_fraction: float = Field(0.2, gt=0.0, lt=1.0, description="share of the training data held out for validation")
    split_seed: int | None = Field(
        None,
        ge=0,
        description=(
            "seed of the train/validation split; null: the run's seed, or, when model.weights starts from an earlier "
            "run on the same data, that run's split (so it never validates on the earlier run's training samples)"
        ),
    )
    subset: int | None = Field(None, ge=1, description="use only this many training samples (small-data experiments)")
    batch_size: int = Field(
        64, ge=1, description="samples per forward pass (per micro-batch); under torchrun the whole job's, split evenly over the processes"
    )
    num_workers: int = Field(0, ge=0, description="DataLoader workers for datasets read from disk")
    augment: bool = Field(True, description="random crop with padding and (except digits) horizontal flip on training batches")
    image_size: int | None = Field(None, ge=8, description="resize images to this side (torchvision models on small images)")


class ModelConfig(_Section):
    """The network and where its first weights come from."""

    name: str = Field("small_cnn", min_length=1, description="small_cnn or any torchvision classification model (resnet18, ...)")
    weights: str | None = Field(
        None,
        description="initial weights: torchvision weight name (DEFAULT, IMAGENET1K_V1), a local checkpoint path, or runs:/<run_id>/<artifact>",
    )
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="dropout before the classification head")
    freeze_backbone_epochs: int = Field(0, ge=0, description="train only the head for this many epochs first")
    batchnorm_eval: bool = Field(False, description="keep BatchNorm layers in eval mode while training (running statistics frozen)")
    batchnorm_momentum: float | None = Field(
        None, ge=0.0, le=1.0, description="BatchNorm running-statistics momentum; null keeps the model's own (0 never updates them)"
    )


class OptimizerConfig(_Section):
    """Optimizer with discriminative learning rates: ``lr`` for the head, ``backbone_lr`` for the rest.

    ``backbone_lr`` null is "auto" (``paramdoctor.config.effective_backbone_lr``):
    a tenth of ``lr`` for a backbone that starts from pretrained weights, ``lr``
    itself for one trained from scratch.
    """

    name: Literal["adamw", "adam", "sgd"] = Field("adamw", description="adamw, adam or sgd")
    lr: float = Field(1e-3, gt=0.0, le=10.0, description="peak learning rate of the new head (and of a backbone trained from scratch)")
    backbone_lr: float | None = Field(
        None,
        gt=0.0,
        le=10.0,
        description=(
            "peak learning rate of the backbone; null (auto): optimizer.lr / 10 when model.weights is set "
            "(fine-tuning pretrained weights), optimizer.lr when training from scratch; an explicit value is used as given"
        ),
    )
    weight_decay: float = Field(5e-4, ge=0.0, le=1.0, description="decoupled (AdamW) or L2 (SGD, Adam) weight decay; not applied to biases and norms")
    momentum: float = Field(0.9, ge=0.0, lt=1.0, description="SGD momentum")
    nesterov: bool = Field(False, description="SGD Nesterov momentum")
    betas: tuple[float, float] = Field((0.9, 0.999), description="Adam/AdamW betas")

    @model_validator(mode="after")
    def _check(self) -> "OptimizerConfig":
        for b in self.betas:
            if not 0.0 <= b < 1.0:
                raise ValueError(f"betas must lie in [0, 1), got {list(self.betas)}")
        if self.nesterov and (self.name != "sgd" or self.momentum == 0.0):
            raise ValueError("nesterov needs name=sgd and momentum > 0")
        return self


class SchedulerConfig(_Section):
    """Learning-rate schedule, stepped every optimizer step."""

    name: Literal["cosine", "step", "onecycle", "constant"] = Field("cosine", description="cosine, step, onecycle or constant")
    warmup_epochs: float = Field(0.0, ge=0.0, description="linear warmup from 0 over this many epochs (cosine, step, constant)")
    min_lr_ratio: float = Field(0.0, ge=0.0, le=1.0, description="cosine floor as a fraction of the peak LR")
    step_size: int = Field(10, ge=1, description="step: decay every this many epochs")
    gamma: float = Field(0.1, gt=0.0, le=1.0, description="step: decay factor")
    pct_start: float = Field(0.3, gt=0.0, lt=1.0, description="onecycle: share of steps spent rising")


class TrainerConfig(_Section):
    """The loop itself."""

    max_epochs: int = Field(20, ge=1, le=100_000, description="upper bound on epochs (early stopping may end sooner)")
    accumulate_grad_batches: int = Field(1, ge=1, description="micro-batches per optimizer step")
    gradient_clip_val: float | None = Field(None, gt=0.0, description="clip the global gradient L2 norm to this value")
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0, description="cross-entropy label smoothing (train/loss is logged without it)")
    precision: Precision = Field("auto", description="auto: bf16/fp16 autocast on CUDA, fp32 on CPU")
    device: str = Field("auto", description="auto, cpu, cuda, cuda:N")
    log_every_n_steps: int = Field(1, ge=1, description="record step/ series every N optimizer steps")
    telemetry_every_n_steps: int = Field(10, ge=1, description="per-layer-group telemetry every N optimizer steps")
    flush_every_s: float = Field(5.0, gt=0.0, le=3600.0, description="send buffered metrics to MLflow at least this often")
    heartbeat_every_s: float = Field(
        30.0, gt=0.0, le=3600.0, description="mark the run alive in MLflow this often; a run silent for 3x this (90 s at least) died"
    )
    checkpoint_dir: str = Field(
        ".paramdoctor/checkpoints",
        min_length=1,
        description="every epoch, last.pt (all state, for train --resume) and best.pt go to CHECKPOINT_DIR/<run_id>/, written atomically",
    )
    stop_on_nonfinite: bool = Field(True, description="stop as soon as the loss becomes NaN or inf")

    @model_validator(mode="after")
    def _device(self) -> "TrainerConfig":
        d = self.device
        if not (d in ("auto", "cpu", "cuda", "mps") or (d.startswith("cuda:") and d[5:].isdigit())):
            raise ValueError(f"device must be auto, cpu, cuda, cuda:N or mps, got {d!r}")
        return self


class EarlyStoppingConfig(_Section):
    """Lightning's EarlyStopping, plus restoring the best weights at the end."""

    enabled: bool = Field(True, description="stop when the monitored metric stops improving")
    monitor: Literal["val/acc", "val/loss"] = Field("val/acc", description="val/acc or val/loss")
    mode: Literal["max", "min"] = Field("max", description="max for accuracy, min for loss")
    patience: int = Field(5, ge=0, description="epochs without improvement before stopping")
    min_delta: float = Field(0.0, ge=0.0, description="smallest change that counts as improvement")
    restore_best_weights: bool = Field(True, description="load the best epoch's weights at the end; that checkpoint is logged")

    @model_validator(mode="after")
    def _mode_matches(self) -> "EarlyStoppingConfig":
        expected = "min" if self.monitor.endswith("loss") else "max"
        if self.mode != expected:
            raise ValueError(f"mode must be {expected!r} when monitoring {self.monitor}, got {self.mode!r}")
        return self


class TrainConfig(_Section):
    """Everything ``paramdoctor train`` needs; the whole of it is logged as MLflow params."""

    seed: int = Field(42, ge=0, description="seeds the split, batch order, augmentation and initial weights")
    experiment: ExperimentConfig = ExperimentConfig()
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    optimizer: OptimizerConfig = OptimizerConfig()
    scheduler: SchedulerConfig = SchedulerConfig()
    trainer: TrainerConfig = TrainerConfig()
    early_stopping: EarlyStoppingConfig = EarlyStoppingConfig()

    @model_validator(mode="after")
    def _cross_checks(self) -> "TrainConfig":
        if self.model.freeze_backbone_epochs >= self.trainer.max_epochs and self.model.freeze_backbone_epochs > 0:
            raise ValueError(
                f"model.freeze_backbone_epochs ({self.model.freeze_backbone_epochs}) must be below trainer.max_epochs ({self.trainer.max_epochs})"
            )
        if self.scheduler.warmup_epochs >= self.trainer.max_epochs and self.scheduler.warmup_epochs > 0:
            raise ValueError(
                f"scheduler.warmup_epochs ({self.scheduler.warmup_epochs}) must be below trainer.max_epochs ({self.trainer.max_epochs})"
            )
        if self.data.dataset in ("imagefolder",) and not self.data.root:
            raise ValueError("data.root is required for dataset imagefolder")
        return self
