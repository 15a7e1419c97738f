"""``build_model``: from ``cfg.model`` to a network with the right head, input and first weights.

The trainer needs more than the module: the backbone/head parameter split for
discriminative learning rates, the layer groups its telemetry follows, and, when
weights were loaded, what was loaded and what was left fresh.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn
from torchvision.models import get_model

from paramdoctor.config.schema import ModelConfig
from paramdoctor.errors import ConfigError, InputError
from paramdoctor.models.groups import NamedParams, layer_groups, param_groups
from paramdoctor.models.heads import add_channel_adapter, find_head, replace_head
from paramdoctor.models.registry import SMALL_CNN, close_matches, torchvision_model_names
from paramdoctor.models.small_cnn import SmallCNN
from paramdoctor.models.weights import (
    TorchvisionWeights,
    load_into,
    pretrained_kwargs,
    read_source,
    read_torchvision_weights,
    resolve_weights,
)

# families with auxiliary classifiers: built without them, so forward returns plain logits
_AUX_FAMILIES = ("googlenet", "inception_v3")


@dataclass
class ModelBundle:
    """The network (on the CPU) and what the trainer needs to know about it."""

    model: nn.Module
    param_groups: dict[str, list[nn.Parameter]]
    layer_groups: dict[str, NamedParams]
    head_names: list[str]
    weights_report: dict[str, list[str]] | None = field(default=None)


def _check_name(name: str) -> None:
    if name == SMALL_CNN or name in torchvision_model_names():
        return
    suggestions = close_matches(name)
    hint = f"did you mean {', '.join(suggestions)}?" if suggestions else "see torchvision.models.list_models()"
    raise ConfigError(f"model.name={name}: unknown model; {hint} (small_cnn or any torchvision classification model)")


def _drop_aux_heads(model: nn.Module) -> None:
    """What torchvision's builders do for ``aux_logits=False`` after loading pretrained weights."""
    if getattr(model, "aux_logits", False):
        model.aux_logits = False
        for name in ("AuxLogits", "aux1", "aux2"):
            if hasattr(model, name):
                setattr(model, name, None)


def _torchvision_model(name: str, source: TorchvisionWeights | None, value: str | None, image_size: int | None) -> nn.Module:
    kwargs: dict = {}
    if source is None:
        if name in _AUX_FAMILIES:
            kwargs.update(aux_logits=False, init_weights=True)
        if name.startswith("vit_") and image_size is not None:
            kwargs["image_size"] = image_size  # random-init ViTs can take any size divisible by the patch
        return get_model(name, weights=None, **kwargs)
    # not get_model(weights=...): torchvision unpickles the cached file with full pickle
    state = read_torchvision_weights(source, str(value))
    model = get_model(name, weights=None, **pretrained_kwargs(name, source.weights))
    hint = f"is {source.cache_path.name} the file from {source.weights.url}? delete it and place an intact copy"
    load_into(model, state, [], f"{value} ({source.cache_path})", hint=hint)  # every tensor, head included
    _drop_aux_heads(model)
    return model


def build_model(cfg: ModelConfig, *, num_classes: int, in_channels: int, image_size: int | None = None) -> ModelBundle:
    """Build ``cfg.name`` for ``num_classes`` classes and ``in_channels``-channel inputs."""
    _check_name(cfg.name)
    if num_classes < 2:
        raise InputError(f"the dataset has {num_classes} class; classification needs at least two classes")
    is_torchvision = cfg.name != SMALL_CNN
    source = resolve_weights(cfg.weights, cfg.name, is_torchvision=is_torchvision)
    report: dict[str, list[str]] | None = None

    if not is_torchvision:
        model: nn.Module = SmallCNN(in_channels, num_classes, dropout=cfg.dropout)
        head_path = "head"
    else:
        pretrained = source if isinstance(source, TorchvisionWeights) else None
        model = _torchvision_model(cfg.name, pretrained, cfg.weights, image_size)
        head_path = find_head(model, cfg.name)
        old_keys = list(model.state_dict())
        _, kept = replace_head(model, head_path, num_classes, cfg.dropout)
        if pretrained is not None:
            head_keys = [k for k in old_keys if k.startswith(f"{head_path}.")]
            fresh = [] if kept else head_keys
            report = {"loaded": [k for k in old_keys if k not in fresh], "skipped": fresh, "missing": fresh}
        add_channel_adapter(model, in_channels, cfg.name)

    head_names = [f"{head_path}.{name}" for name, _ in model.get_submodule(head_path).named_parameters()]
    if source is not None and not isinstance(source, TorchvisionWeights):
        report = load_into(model, read_source(source, str(cfg.weights)), head_names, str(cfg.weights))
    return ModelBundle(
        model=model,
        param_groups=param_groups(model, head_names),
        layer_groups=layer_groups(model, head_names),
        head_names=head_names,
        weights_report=report,
    )
