"""Finding and replacing a classification head, and adapting the input channels.

The new head is a ``DropoutLinear``: a plain ``nn.Linear`` whose forward applies
dropout first. Because it adds no submodule, its parameters keep the names a
torchvision checkpoint uses (``fc.weight``, ``classifier.1.bias``), whatever
the dropout, so checkpoints move freely between configurations.
"""

from __future__ import annotations

from torch import Tensor, nn

from paramdoctor.errors import ConfigError

# where torchvision's families keep their final classifier, tried in order
_KNOWN_HEADS = ("fc", "heads.head", "head", "classifier")


class DropoutLinear(nn.Linear):
    """``Linear(dropout(x))``, with the state dict of a plain ``nn.Linear``."""

    def __init__(self, in_features: int, out_features: int, *, dropout: float = 0.0, bias: bool = True) -> None:
        super().__init__(in_features, out_features, bias=bias)
        self.dropout = dropout

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(nn.functional.dropout(x, self.dropout, self.training))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, dropout={self.dropout}"


def find_head(model: nn.Module, model_name: str) -> str:
    """Dotted path of the model's final ``nn.Linear``: ``fc``, ``heads.head``, ``classifier[-1]``, or the last Linear."""
    for path in _KNOWN_HEADS:
        try:
            module = model.get_submodule(path)
        except AttributeError:
            continue
        if isinstance(module, nn.Linear):
            return path
        if isinstance(module, nn.Sequential) and len(module) and isinstance(module[-1], nn.Linear):
            return f"{path}.{len(module) - 1}"
    linears = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    if not linears:
        raise ConfigError(
            f"model.name={model_name}: no nn.Linear classification head to replace; choose a model with a linear classifier"
        )
    return linears[-1]


def replace_head(model: nn.Module, path: str, num_classes: int, dropout: float) -> tuple[nn.Linear, bool]:
    """Put a fresh ``DropoutLinear`` at ``path``; keep the old weights when the shapes already fit.

    Returns the new head and whether the old weights were kept.
    """
    old = model.get_submodule(path)
    assert isinstance(old, nn.Linear)
    new = DropoutLinear(old.in_features, num_classes, dropout=dropout, bias=old.bias is not None)
    kept = old.out_features == num_classes
    if kept:
        new.load_state_dict(old.state_dict())
    model.set_submodule(path, new)
    return new, kept


class RepeatChannels(nn.Module):
    """Grey to RGB: repeat a single channel three times (no parameters)."""

    def __init__(self, channels: int = 3) -> None:
        super().__init__()
        self.channels = channels

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[1] == 1:
            return x.expand(-1, self.channels, -1, -1)
        return x

    def extra_repr(self) -> str:
        return f"1 -> {self.channels} channels"


def _adapt_input(module: nn.Module, args: tuple) -> tuple:
    return (module.input_adapter(args[0]), *args[1:])


def add_channel_adapter(model: nn.Module, in_channels: int, model_name: str) -> None:
    """Let a 3-channel model take ``in_channels`` inputs without renaming any of its parameters.

    The adapter is registered as ``model.input_adapter`` (visible in the repr, no
    state) and applied by a forward pre-hook, so ``conv1.weight`` stays
    ``conv1.weight`` and pretrained checkpoints still load.
    """
    if in_channels == 3:
        return
    if in_channels != 1:
        raise ConfigError(
            f"model.name={model_name}: inputs with {in_channels} channels are not supported (only 1 or 3); "
            f"convert the images to grey or RGB"
        )
    model.input_adapter = RepeatChannels(3)
    model.register_forward_pre_hook(_adapt_input)
