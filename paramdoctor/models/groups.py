"""Layer groups for telemetry and the backbone/head split for the optimizer.

Telemetry wants a handful of groups that follow the network from input to
output (ResNet: ``stem``, ``layer1`` .. ``layer4``, ``head``), not one line per
tensor. The rule, with no per-family table:

* every top-level child that holds parameters is a unit;
* the largest unit is opened into its children while it dominates (more than
  80% of the backbone, with a block inside: ViT's ``encoder`` then
  ``encoder.layers``) or while there are fewer than four units (EfficientNet's
  ``features`` becomes ``features.0`` .. ``features.8``); a conv-BN block is
  never split into single layers by the first rule;
* single layers (a conv, a norm, a bare parameter) before the first block are
  merged into ``stem``; the classification head is always ``head``.
"""

from __future__ import annotations

from torch import nn

from paramdoctor.keys import safe_key

NamedParams = list[tuple[str, nn.Parameter]]

_DOMINANT_SHARE = 0.8
_FEW_UNITS = 4


def _holders(module: nn.Module, path: str, sizes: dict[str, int]) -> list[str]:
    """Paths of ``module``'s children and direct parameters that hold backbone parameters."""
    found = []
    for name, _ in module.named_parameters(recurse=False):
        if f"{path}.{name}" in sizes:
            found.append(f"{path}.{name}")
    for name, _ in module.named_children():
        child = f"{path}.{name}"
        if any(k.startswith(f"{child}.") for k in sizes):
            found.append(child)
    return found


def _opened_paths(model: nn.Module, sizes: dict[str, int]) -> set[str]:
    """Module paths whose children become units of their own (the root always)."""
    total = sum(sizes.values()) or 1
    prefixed = {f".{k}": v for k, v in sizes.items()}  # the root's path is "", children start with "."

    def size_of(path: str) -> int:
        return prefixed.get(path, 0) + sum(v for k, v in prefixed.items() if k.startswith(f"{path}."))

    def module_at(path: str) -> nn.Module | None:
        try:
            return model.get_submodule(path.lstrip("."))
        except AttributeError:
            return None  # a bare parameter

    opened = {""}
    units = _holders(model, "", prefixed)
    while units:
        largest = max(units, key=size_of)
        module = module_at(largest)
        if module is None:
            break
        inner = _holders(module, largest, prefixed)
        has_block = any((m := module_at(p)) is not None and next(m.children(), None) is not None for p in inner)
        dominant = size_of(largest) > _DOMINANT_SHARE * total and len(inner) >= 2 and has_block
        few = len(units) < _FEW_UNITS and len(inner) >= 3
        if not (dominant or few):
            break
        opened.add(largest.lstrip("."))
        position = units.index(largest)
        units[position : position + 1] = inner
    return opened


def _unit_of(name: str, opened: set[str]) -> str:
    """The unit a parameter belongs to: the first module on its path that is not opened."""
    path = ""
    for part in name.split(".")[:-1]:
        path = f"{path}.{part}" if path else part
        if path not in opened:
            return path
    return name  # a parameter held directly by an opened module (ViT's class token)


def _is_single_layer(model: nn.Module, unit: str) -> bool:
    try:
        module = model.get_submodule(unit)
    except AttributeError:
        return True  # a bare parameter
    return next(module.children(), None) is None


def layer_groups(model: nn.Module, head_names: list[str]) -> dict[str, NamedParams]:
    """Ordered ``{group: [(param_name, param), ...]}``: every trainable parameter once, head last."""
    heads = set(head_names)
    named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    backbone = [(name, p) for name, p in named if name not in heads]
    opened = _opened_paths(model, {name: p.numel() for name, p in backbone})

    units = [_unit_of(name, opened) for name, _ in backbone]
    single = {unit: _is_single_layer(model, unit) for unit in units}
    first_block = next((i for i, unit in enumerate(units) if not single[unit]), None)

    groups: dict[str, NamedParams] = {}
    for i, ((name, param), unit) in enumerate(zip(backbone, units)):
        group = "stem" if first_block is not None and i < first_block else unit
        groups.setdefault(safe_key(group), []).append((name, param))
    head = [(name, p) for name, p in named if name in heads]
    if head:
        groups.setdefault("head", []).extend(head)
    return groups


def param_groups(model: nn.Module, head_names: list[str]) -> dict[str, list[nn.Parameter]]:
    """``{"backbone": [...], "head": [...]}``: every trainable parameter exactly once."""
    heads = set(head_names)
    named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    return {
        "backbone": [p for name, p in named if name not in heads],
        "head": [p for name, p in named if name in heads],
    }
