"""Typed configuration: the schema, and loading it from YAML plus overrides."""

from paramdoctor.config.loading import apply_overrides, dump_yaml, flatten, known_keys, load_config, to_tree, validate
from paramdoctor.config.schema import TrainConfig

__all__ = ["TrainConfig", "apply_overrides", "dump_yaml", "flatten", "known_keys", "load_config", "to_tree", "validate"]
