"""Networks for the built-in trainer: a small CNN or any torchvision classifier, with a new head and first weights."""

from paramdoctor.models.build import ModelBundle, build_model
from paramdoctor.models.heads import DropoutLinear
from paramdoctor.models.registry import SMALL_CNN, known_model_names, min_input_size

__all__ = ["SMALL_CNN", "DropoutLinear", "ModelBundle", "build_model", "known_model_names", "min_input_size"]
