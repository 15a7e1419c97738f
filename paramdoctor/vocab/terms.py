"""Each tool's name for each paramdoctor config key.

A :class:`Term` says what the tool calls the setting, whether a prescribed
change is relative (a learning rate cut to 0.3x is 0.3x of *the run's own*
rate, not of paramdoctor's default) and where the run's own value may be found
in the record's params and meta. ``key=None`` means the tool has no such
setting; the note then says what to do instead. Names follow the tools'
documentation: Hugging Face ``TrainingArguments`` and ``EarlyStoppingCallback``,
LLaMA-Factory's YAML (HF names plus its own), Lightning's ``Trainer`` and
callbacks, Keras ``fit``/optimizers/callbacks, Ultralytics ``train`` arguments.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ABSOLUTE, RELATIVE = "absolute", "relative"


@dataclass(frozen=True)
class Term:
    key: str | None
    note: str = ""
    scale: str = ABSOLUTE
    actual: tuple[str, ...] = ()  # params/meta names holding the run's own value
    integer: bool = False
    values: dict[Any, Any] = field(default_factory=dict)  # categorical values: paramdoctor -> tool


_HF_ES = "transformers.EarlyStoppingCallback"

HF: dict[str, Term] = {
    "optimizer.lr": Term("learning_rate", scale=RELATIVE, actual=("learning_rate", "peak_lr")),
    "optimizer.backbone_lr": Term(
        None,
        "TrainingArguments has one learning_rate for all weights; for a lower rate on the pretrained body pass "
        "Trainer(optimizers=(AdamW(param_groups), scheduler)) or override Trainer.create_optimizer",
    ),
    "optimizer.weight_decay": Term("weight_decay", scale=RELATIVE, actual=("weight_decay",)),
    "scheduler.name": Term(
        "lr_scheduler_type",
        values={"cosine": "cosine", "constant": "constant_with_warmup", "step": None, "onecycle": None},
    ),
    "trainer.max_epochs": Term(
        "num_train_epochs", "if you set max_steps, it wins over num_train_epochs: scale it the same way",
        RELATIVE, ("num_train_epochs", "max_epochs"), integer=True,
    ),
    "trainer.accumulate_grad_batches": Term(
        "gradient_accumulation_steps", scale=RELATIVE, actual=("gradient_accumulation_steps",), integer=True
    ),
    "trainer.gradient_clip_val": Term("max_grad_norm", scale=ABSOLUTE, actual=("max_grad_norm",)),
    "trainer.label_smoothing": Term("label_smoothing_factor", actual=("label_smoothing_factor",)),
    "data.batch_size": Term(
        "per_device_train_batch_size", scale=RELATIVE, actual=("per_device_train_batch_size", "train_batch_size"), integer=True
    ),
    "data.augment": Term(None, "augmentation lives in your dataset's transforms (dataset.set_transform), not in TrainingArguments"),
    "model.dropout": Term(None, "dropout is set in the model config (e.g. hidden_dropout_prob or classifier_dropout in from_pretrained)"),
    "model.freeze_backbone_epochs": Term(
        None, "no TrainingArguments field: set requires_grad=False on the base model and unfreeze it from a TrainerCallback after N epochs"
    ),
    "early_stopping.patience": Term(
        f"{_HF_ES}(early_stopping_patience=...)",
        "counts evaluations without improvement; needs load_best_model_at_end=True and metric_for_best_model",
        integer=True,
    ),
    "early_stopping.min_delta": Term(f"{_HF_ES}(early_stopping_threshold=...)"),
    "early_stopping.restore_best_weights": Term("load_best_model_at_end", "needs save_strategy equal to eval_strategy"),
    "early_stopping.monitor": Term(
        "metric_for_best_model", "set greater_is_better to match", values={"val/loss": "eval_loss", "val/acc": "eval_accuracy"}
    ),
}

LLAMAFACTORY: dict[str, Term] = {
    **HF,
    "optimizer.backbone_lr": Term(
        None,
        "LLaMA-Factory trains with one learning_rate; with finetuning_type: lora the base weights stay frozen, "
        "and loraplus_lr_ratio raises the rate of the LoRA B matrices only",
    ),
    "data.augment": Term(None, "no augmentation setting for text fine-tuning; add or vary training data instead"),
    "model.dropout": Term("lora_dropout", "with finetuning_type: lora; for full fine-tuning dropout lives in the model config"),
    "model.freeze_backbone_epochs": Term(
        None, "finetuning_type: freeze (freeze_trainable_layers) trains only the last layers for the whole run; there is no per-epoch unfreezing"
    ),
    "early_stopping.patience": Term(
        "early_stopping_steps",
        "counts evaluations without improvement; needs load_best_model_at_end: true and metric_for_best_model",
        integer=True,
    ),
    "early_stopping.min_delta": Term(None, "LLaMA-Factory's early stopping has no threshold setting"),
}

LIGHTNING: dict[str, Term] = {
    "optimizer.lr": Term(
        "configure_optimizers: lr", "the learning rate your LightningModule.configure_optimizers passes to the optimizer",
        RELATIVE, ("lr", "learning_rate", "peak_lr"),
    ),
    "optimizer.backbone_lr": Term(
        "configure_optimizers: backbone param group lr",
        "give the backbone its own parameter group in LightningModule.configure_optimizers",
        RELATIVE, ("backbone_lr",),
    ),
    "optimizer.weight_decay": Term(
        "configure_optimizers: weight_decay", "the optimizer's weight_decay in LightningModule.configure_optimizers",
        RELATIVE, ("weight_decay",),
    ),
    "scheduler.name": Term(
        "configure_optimizers: lr_scheduler",
        "the scheduler LightningModule.configure_optimizers returns (interval='step')",
        values={"cosine": "CosineAnnealingLR", "step": "StepLR", "onecycle": "OneCycleLR", "constant": "no scheduler"},
    ),
    "trainer.max_epochs": Term("max_epochs", "Trainer(max_epochs=...)", RELATIVE, ("max_epochs",), integer=True),
    "trainer.accumulate_grad_batches": Term(
        "accumulate_grad_batches", "Trainer(accumulate_grad_batches=...)", RELATIVE, ("accumulate_grad_batches",), integer=True
    ),
    "trainer.gradient_clip_val": Term("gradient_clip_val", "Trainer(gradient_clip_val=..., gradient_clip_algorithm='norm')"),
    "trainer.label_smoothing": Term("nn.CrossEntropyLoss(label_smoothing=...)", "the loss in your LightningModule"),
    "data.batch_size": Term(
        "DataLoader(batch_size=...)", "in your LightningDataModule's train_dataloader", RELATIVE, ("batch_size",), integer=True
    ),
    "data.augment": Term(None, "augmentation lives in your LightningDataModule's transforms"),
    "model.dropout": Term(None, "add or change an nn.Dropout before the classification head in your LightningModule"),
    "model.freeze_backbone_epochs": Term(
        "BackboneFinetuning(unfreeze_backbone_at_epoch=...)",
        "lightning.pytorch.callbacks.BackboneFinetuning; your LightningModule needs a .backbone attribute",
        integer=True,
    ),
    "early_stopping.patience": Term(
        "EarlyStopping(patience=...)", "counts validation checks, not epochs, when val_check_interval < 1", integer=True
    ),
    "early_stopping.min_delta": Term("EarlyStopping(min_delta=...)"),
    "early_stopping.restore_best_weights": Term(
        "ModelCheckpoint(monitor=..., save_top_k=1)", "then load ckpt_path='best' for testing and export"
    ),
    "early_stopping.monitor": Term("EarlyStopping(monitor=...)", values={"val/loss": "val_loss", "val/acc": "val_acc"}),
}

KERAS: dict[str, Term] = {
    "optimizer.lr": Term("optimizer.learning_rate", scale=RELATIVE, actual=("learning_rate", "lr", "peak_lr")),
    "optimizer.backbone_lr": Term(
        None,
        "Keras optimizers take one learning rate: fine-tune in two phases (base_model.trainable = False, "
        "then unfreeze and compile again with a lower learning_rate)",
    ),
    "optimizer.weight_decay": Term("optimizer.weight_decay", "e.g. keras.optimizers.AdamW(weight_decay=...)", RELATIVE, ("weight_decay",)),
    "scheduler.name": Term(
        "optimizer.learning_rate schedule",
        values={
            "cosine": "keras.optimizers.schedules.CosineDecay",
            "step": "keras.optimizers.schedules.PiecewiseConstantDecay",
            "onecycle": None,
            "constant": "a constant float learning_rate",
        },
    ),
    "trainer.max_epochs": Term("epochs", "model.fit(epochs=...)", RELATIVE, ("epochs", "max_epochs", "epochs_run"), integer=True),
    "trainer.accumulate_grad_batches": Term(
        "optimizer.gradient_accumulation_steps", "Keras 3 optimizers accept gradient_accumulation_steps",
        RELATIVE, ("gradient_accumulation_steps",), integer=True,
    ),
    "trainer.gradient_clip_val": Term("optimizer.global_clipnorm", "e.g. keras.optimizers.AdamW(global_clipnorm=...)"),
    "trainer.label_smoothing": Term("CategoricalCrossentropy(label_smoothing=...)", "the loss passed to model.compile"),
    "data.batch_size": Term("batch_size", "model.fit(batch_size=...)", RELATIVE, ("batch_size",), integer=True),
    "data.augment": Term(None, "add keras.layers.RandomFlip / RandomCrop / RandomTranslation in front of the model"),
    "model.dropout": Term("keras.layers.Dropout(rate=...)", "the Dropout layer before the classification head"),
    "model.freeze_backbone_epochs": Term(
        None, "set base_model.trainable = False, fit for that many epochs, then unfreeze, compile again and continue"
    ),
    "early_stopping.patience": Term("EarlyStopping(patience=...)", integer=True),
    "early_stopping.min_delta": Term("EarlyStopping(min_delta=...)"),
    "early_stopping.restore_best_weights": Term("EarlyStopping(restore_best_weights=...)"),
    "early_stopping.monitor": Term("EarlyStopping(monitor=...)", values={"val/loss": "val_loss", "val/acc": "val_accuracy"}),
}

ULTRALYTICS: dict[str, Term] = {
    "optimizer.lr": Term("lr0", "set optimizer explicitly too: optimizer=auto picks its own lr0", RELATIVE, ("lr0",)),
    "optimizer.backbone_lr": Term(None, "Ultralytics trains all layers at lr0; freeze=N keeps the first N layers fixed instead"),
    "optimizer.weight_decay": Term("weight_decay", scale=RELATIVE, actual=("weight_decay",)),
    "scheduler.warmup_epochs": Term("warmup_epochs", actual=("warmup_epochs",)),
    "scheduler.name": Term("cos_lr", values={"cosine": True, "step": False, "onecycle": False, "constant": False}),
    "trainer.max_epochs": Term("epochs", scale=RELATIVE, actual=("epochs", "max_epochs"), integer=True),
    "trainer.accumulate_grad_batches": Term(
        None, "Ultralytics accumulates gradients up to a nominal batch size: raise nbs (accumulation = nbs / batch)"
    ),
    "trainer.gradient_clip_val": Term(None, "Ultralytics clips gradient norms at a fixed 10.0; there is no setting"),
    "trainer.label_smoothing": Term("label_smoothing", actual=("label_smoothing",)),
    "data.batch_size": Term("batch", scale=RELATIVE, actual=("batch",), integer=True),
    "data.augment": Term(None, "tune the augmentation arguments instead: hsv_h/hsv_s/hsv_v, fliplr, mosaic, auto_augment, erasing"),
    "model.dropout": Term("dropout", "classification models only", actual=("dropout",)),
    "model.freeze_backbone_epochs": Term(None, "freeze=N keeps the first N layers frozen for the whole run"),
    "early_stopping.patience": Term("patience", actual=("patience",), integer=True),
    "early_stopping.min_delta": Term(None, "Ultralytics' early stopping has no threshold setting"),
    "early_stopping.restore_best_weights": Term(None, "Ultralytics always keeps the best epoch as weights/best.pt"),
    "early_stopping.monitor": Term(None, "Ultralytics monitors its own fitness score (mostly mAP50-95)"),
}

TOOLS: dict[str, dict[str, Term]] = {
    "hf_trainer": HF,
    "llamafactory": LLAMAFACTORY,
    "lightning": LIGHTNING,
    "keras": KERAS,
    "ultralytics": ULTRALYTICS,
}
ALIASES = {"hf": "hf_trainer", "transformers": "hf_trainer", "huggingface": "hf_trainer", "llama_factory": "llamafactory",
           "pytorch_lightning": "lightning", "tensorflow": "keras", "yolo": "ultralytics"}
