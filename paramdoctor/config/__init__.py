"""Typed configuration: the schema, and loading it from YAML plus overrides."""

from paramdoctor.config.loading import apply_overrides, dump_yaml, flatten, known_keys, load_config, to_tree, validate
from paramdoctor.config.resolve import backbone_lr_note, effective_backbone_lr
from paramdoctor.config.schema import TrainConfig

__all__ = [
    "TrainConfig",
    "apply_overrides",
    "backbone_lr_note",
    "dump_yaml",
    "effective_backbone_lr",
    "flatten",
    "known_keys",
    "load_config",
    "to_tree",
    "validate",
]
