"""What ``paramdoctor tune`` searches: dimensions over the config's dotted keys.

A search space maps config keys to ranges. :func:`default_space` derives one
from a config, around its current values; :func:`load_space` reads one from a
YAML file, a flat mapping of dotted keys to specs::

    # space.yaml: every key a dotted config key (or optimizer.backbone_lr_ratio)
    optimizer.lr:            {type: float, low: 1.0e-5, high: 1.0, log: true}
    optimizer.weight_decay:  {type: float, low: 1.0e-6, high: 0.05, log: true}
    data.batch_size:         {type: categorical, choices: [16, 32, 64, 128]}
    model.dropout:           {type: float, low: 0.0, high: 0.5}
    trainer.max_epochs:      {type: int, low: 5, high: 20, step: 5}

A spec has ``type`` (``float``, ``int`` or ``categorical``); ``low`` and
``high`` (float and int, ``low < high``, both ends included), ``log``
(sample the logarithm; needs ``low > 0``) and ``step`` (a grid, not with
``log``); ``choices`` (categorical: a non-empty list of distinct scalars).
Nothing else is accepted. Each end of a range and each choice must be a value
the config accepts for that key (checked with the config's own validation on
top of the base config), and ``float``/``int`` only go with numeric keys.
Keys that would change what every trial is scored on or where it is recorded
(``experiment.*``, the dataset, its split, the monitored metric, devices and
logging intervals) cannot be tuned. Every error is one line naming the file
and the entry.

``optimizer.backbone_lr_ratio`` is the one key that is not a config key: the
backbone's learning rate as a fraction of the head's (``backbone_lr = lr x
ratio``). The two learning rates move together (both scale the step size),
so searching them independently wastes trials on pairs no one would try (a
backbone 300x faster than its new head); as a ratio, the head LR is the step
size and the ratio is how much more gently the backbone moves, two nearly
independent questions the sampler and the importance analysis can tell apart.

The default space (:func:`default_space`), around the config's current values:

==============================  =================================================================
key                             range
==============================  =================================================================
optimizer.lr                    log-uniform, lr / 30 .. lr x 30 (at most 10)
optimizer.backbone_lr_ratio     log-uniform, ratio / 30 .. 1 (the current ratio: 0.1 fine-tuning
                                pretrained weights, 1 from scratch); never above 1
optimizer.weight_decay          log-uniform, 1e-6 (off, in effect) .. max(100 x current, 0.01)
data.batch_size                 categorical, powers of two from a quarter to 4x the current (at
                                least 8), none above half the training subset; the current value
                                always included
model.dropout                   uniform 0 .. 0.5
scheduler.warmup_epochs         uniform 0 .. max(1, max_epochs / 5), below max_epochs (cosine,
                                step, constant); scheduler.pct_start 0.1 .. 0.5 for onecycle
trainer.label_smoothing         uniform 0 .. 0.2
==============================  =================================================================

A current value outside a default range widens that range to include it.
Not searched by default: the optimizer, the epochs (the trial budget), the
schedule's shape, augmentation; a ``--space`` file can add any of them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from paramdoctor.config import TrainConfig, effective_backbone_lr, known_keys, to_tree, validate
from paramdoctor.config.loading import describe_value, load_yaml_text, read_text_file, set_dotted, suggest
from paramdoctor.errors import ConfigError

if TYPE_CHECKING:
    import optuna

RATIO_KEY = "optimizer.backbone_lr_ratio"
TYPES = ("float", "int", "categorical")
SPEC_KEYS = ("type", "low", "high", "log", "step", "choices")

# Keys a trial may not change: they define the objective, the data it is scored on, or where runs go.
_FROZEN_PREFIXES = ("experiment.",)
_FROZEN = {
    "data.dataset": "it changes the data every trial is scored on",
    "data.root": "it changes the data every trial is scored on",
    "data.download": "it is not a hyperparameter",
    "data.val_fraction": "it changes the validation set every trial is scored on",
    "data.split_seed": "it changes the validation set every trial is scored on",
    "data.subset": "it changes the data every trial is scored on",
    "early_stopping.monitor": "it is the metric the study optimises",
    "early_stopping.mode": "it is the direction the study optimises",
    "trainer.device": "it is not a hyperparameter",
    "trainer.checkpoint_dir": "it is not a hyperparameter",
    "trainer.log_every_n_steps": "it only changes what is recorded",
    "trainer.telemetry_every_n_steps": "it only changes what is recorded",
    "trainer.flush_every_s": "it only changes what is recorded",
    "trainer.heartbeat_every_s": "it only changes what is recorded",
}


@dataclass(frozen=True)
class Dimension:
    """One searched key: ``float``/``int`` over ``[low, high]`` (``log``, ``step``), or ``categorical`` ``choices``."""

    key: str
    type: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple[Any, ...] = ()

    def suggest(self, trial: "optuna.trial.Trial") -> Any:
        if self.type == "float":
            return trial.suggest_float(self.key, float(self.low), float(self.high), log=self.log, step=self.step)
        if self.type == "int":
            return trial.suggest_int(self.key, int(self.low), int(self.high), log=self.log, step=int(self.step or 1))
        return trial.suggest_categorical(self.key, list(self.choices))

    def clip(self, value: Any) -> Any:
        """``value`` moved into the dimension: clamped to the range (on its grid), or the nearest choice."""
        if self.type == "categorical":
            if value in self.choices:
                return value
            numeric = [c for c in self.choices if _is_number(c)]
            if _is_number(value) and numeric:
                if value > 0 and all(c > 0 for c in numeric):  # batch sizes and rates: nearest by ratio
                    return min(numeric, key=lambda c: abs(math.log(c) - math.log(value)))
                return min(numeric, key=lambda c: abs(c - value))
            return self.choices[0]
        if not _is_number(value):
            return self.low
        x = min(max(float(value), float(self.low)), float(self.high))
        if self.step:
            x = float(self.low) + round((x - float(self.low)) / float(self.step)) * float(self.step)
            x = min(x, float(self.high))
        return int(round(x)) if self.type == "int" else x

    def describe(self) -> str:
        """``log 3.3e-05 .. 0.03``, ``0 .. 0.5 step 0.1``, ``{16, 32, 64}``."""
        if self.type == "categorical":
            return "{" + ", ".join(str(c) for c in self.choices) + "}"
        text = f"{self.low:g} .. {self.high:g}"
        if self.step:
            text += f" step {self.step:g}"
        return ("log " if self.log else "") + text

    def to_dict(self) -> dict[str, Any]:
        if self.type == "categorical":
            return {"type": "categorical", "choices": list(self.choices)}
        out: dict[str, Any] = {"type": self.type, "low": self.low, "high": self.high}
        if self.log:
            out["log"] = True
        if self.step:
            out["step"] = self.step
        return out


@dataclass(frozen=True)
class SearchSpace:
    dimensions: tuple[Dimension, ...]
    source: str = "default"  # "default" or the file it came from

    @property
    def keys(self) -> list[str]:
        return [d.key for d in self.dimensions]

    def __getitem__(self, key: str) -> Dimension:
        for d in self.dimensions:
            if d.key == key:
                return d
        raise KeyError(key)

    def suggest(self, trial: "optuna.trial.Trial") -> dict[str, Any]:
        return {d.key: d.suggest(trial) for d in self.dimensions}

    def config_for(self, base: TrainConfig | dict[str, Any], params: dict[str, Any], where: str = "trial") -> TrainConfig:
        """``base`` with ``params`` applied (``optimizer.backbone_lr_ratio`` becomes ``optimizer.backbone_lr``), validated."""
        tree = to_tree(base) if isinstance(base, TrainConfig) else _copy(base)
        for key, value in params.items():
            if key != RATIO_KEY:
                set_dotted(tree, key, value)
        if RATIO_KEY in params:
            tree["optimizer"]["backbone_lr"] = float(tree["optimizer"]["lr"]) * float(params[RATIO_KEY])
        return validate(tree, where=where)

    def params_of(self, config: TrainConfig | dict[str, Any]) -> dict[str, Any]:
        """The config's values for every searched key, each moved into its dimension (:meth:`Dimension.clip`)."""
        cfg = config if isinstance(config, TrainConfig) else validate(config, where="config")
        tree = to_tree(cfg)
        out: dict[str, Any] = {}
        for d in self.dimensions:
            if d.key == RATIO_KEY:
                value = effective_backbone_lr(cfg) / cfg.optimizer.lr
            else:
                value = _get(tree, d.key)
            out[d.key] = d.clip(value)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {d.key: d.to_dict() for d in self.dimensions}

    def to_yaml(self) -> str:
        """The space as a ``--space`` file (one flow mapping per key)."""
        import yaml

        lines = [f"# paramdoctor tune search space ({self.source})"]
        for d in self.dimensions:
            flow = yaml.safe_dump(d.to_dict(), default_flow_style=True, sort_keys=False, width=1000).strip()
            lines.append(f"{d.key}: {flow}")
        return "\n".join(lines) + "\n"


# --- the default space ------------------------------------------------------------------


def default_space(config: TrainConfig) -> SearchSpace:
    """The space around ``config``'s current values (see the module doc for the ranges and why)."""
    opt = config.optimizer
    dims: list[Dimension] = []
    lr = opt.lr
    dims.append(Dimension("optimizer.lr", "float", _sig(lr / 30), _sig(min(lr * 30, 10.0)), log=True))
    ratio = min(effective_backbone_lr(config) / lr, 1.0)
    dims.append(Dimension(RATIO_KEY, "float", _sig(ratio / 30), 1.0, log=True))
    wd = opt.weight_decay
    dims.append(Dimension("optimizer.weight_decay", "float", 1e-6, _sig(min(1.0, max(wd * 100, 0.01))), log=True))
    dims.append(Dimension("data.batch_size", "categorical", choices=tuple(_batch_sizes(config))))
    dims.append(Dimension("model.dropout", "float", 0.0, max(0.5, config.model.dropout)))
    epochs = config.trainer.max_epochs
    if config.scheduler.name == "onecycle":
        dims.append(Dimension("scheduler.pct_start", "float", min(0.1, config.scheduler.pct_start),
                              max(0.5, config.scheduler.pct_start)))
    elif epochs > 1:
        high = min(max(1.0, epochs / 5), epochs - 0.5)
        dims.append(Dimension("scheduler.warmup_epochs", "float", 0.0, _sig(max(high, config.scheduler.warmup_epochs))))
    dims.append(Dimension("trainer.label_smoothing", "float", 0.0, max(0.2, config.trainer.label_smoothing)))
    return SearchSpace(tuple(dims), "default")


def _batch_sizes(config: TrainConfig) -> list[int]:
    current = config.data.batch_size
    low, high = max(8, current // 4), current * 4
    sizes = [2**p for p in range(3, 16) if low <= 2**p <= high]
    if config.data.subset:
        sizes = [s for s in sizes if s <= max(8, config.data.subset // 2)]
    return sorted(set(sizes) | {current})


def _sig(x: float, digits: int = 3) -> float:
    """``x`` to ``digits`` significant digits: range ends a person can read (3.33e-05, not 3.3333333e-05)."""
    return float(f"{x:.{digits}g}")


# --- reading a space file -------------------------------------------------------------------


def load_space(path: str | Path, base: TrainConfig) -> SearchSpace:
    """The space in ``path`` (see the module doc), validated against ``base``; one ConfigError line per problem."""
    path = Path(path)
    text = read_text_file(path, "search space file")
    data = load_yaml_text(text, str(path))
    return parse_space(data, base, where=str(path))


def parse_space(data: Any, base: TrainConfig, where: str = "search space") -> SearchSpace:
    if not isinstance(data, dict) or not data:
        raise ConfigError(
            f"{where}: a search space is a mapping of dotted config keys to specs, e.g. "
            "optimizer.lr: {type: float, low: 1.0e-5, high: 1.0e-1, log: true}"
        )
    fields = known_keys()
    dims = []
    for key, spec in data.items():
        key = str(key)
        entry = f"{where}: entry {key!r}"
        if key != RATIO_KEY and key not in fields:
            raise ConfigError(f"{entry}: unknown config key{suggest(key, [*fields, RATIO_KEY])}")
        if key in _FROZEN or key.startswith(_FROZEN_PREFIXES):
            why = _FROZEN.get(key, "it names where runs are recorded")
            raise ConfigError(f"{entry}: cannot be tuned ({why})")
        dims.append(_dimension(key, spec, entry, fields.get(key)))
    keys = [d.key for d in dims]
    if RATIO_KEY in keys and "optimizer.backbone_lr" in keys:
        raise ConfigError(f"{where}: give optimizer.backbone_lr or {RATIO_KEY}, not both (the ratio sets backbone_lr)")
    space = SearchSpace(tuple(dims), where)
    for d in dims:  # every end and choice must be a value the config takes, on top of the base
        for value in (d.choices if d.type == "categorical" else (d.low, d.high)):
            try:
                space.config_for(base, {d.key: value}, where="config")
            except ConfigError as exc:
                reason = str(exc).removeprefix("config: ")
                raise ConfigError(f"{where}: entry {d.key!r}: {describe_value(value)} is not a valid value ({reason})") from None
    return space


def _dimension(key: str, spec: Any, entry: str, info: Any) -> Dimension:
    if not isinstance(spec, dict):
        raise ConfigError(f"{entry}: expected a mapping like {{type: float, low: 0.0, high: 0.5}}, got {describe_value(spec)}")
    unknown = [k for k in spec if k not in SPEC_KEYS]
    if unknown:
        raise ConfigError(f"{entry}: unknown field {str(unknown[0])!r}{suggest(str(unknown[0]), SPEC_KEYS)}; fields: {', '.join(SPEC_KEYS)}")
    kind = spec.get("type")
    if kind not in TYPES:
        raise ConfigError(f"{entry}: type must be one of {', '.join(TYPES)}, got {describe_value(kind)}")
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise ConfigError(f"{entry}: log must be true or false, got {describe_value(log)}")
    if kind == "categorical":
        extra = [k for k in ("low", "high", "log", "step") if k in spec]
        if extra:
            raise ConfigError(f"{entry}: {extra[0]} does not go with type categorical (give choices only)")
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f"{entry}: categorical needs choices, a non-empty list, got {describe_value(choices)}")
        for c in choices:
            if not (c is None or isinstance(c, (bool, int, float, str))):
                raise ConfigError(f"{entry}: choices must be numbers, strings, booleans or null, got {describe_value(c)}")
        if len({repr(c) for c in choices}) != len(choices):
            raise ConfigError(f"{entry}: choices must be distinct, got {describe_value(choices)}")
        return Dimension(key, "categorical", choices=tuple(choices))

    if "choices" in spec:
        raise ConfigError(f"{entry}: choices go with type categorical only")
    numeric = _numeric_kind(key, info)
    if numeric is None:
        raise ConfigError(f"{entry}: type {kind} needs a numeric key; this one is not a number (use type: categorical)")
    if kind == "float" and numeric == "int":
        raise ConfigError(f"{entry}: the key is an integer; use type: int")
    low, high, step = spec.get("low"), spec.get("high"), spec.get("step")
    for name, value in (("low", low), ("high", high)):
        if not _is_number(value) or not math.isfinite(value):
            raise ConfigError(f"{entry}: {name} must be a finite number, got {describe_value(value)}")
        if kind == "int" and not float(value).is_integer():
            raise ConfigError(f"{entry}: {name} must be an integer for type int, got {describe_value(value)}")
    if not low < high:
        raise ConfigError(f"{entry}: low must be below high, got low={low:g} and high={high:g}")
    if log and low <= 0:
        raise ConfigError(f"{entry}: log: true needs low > 0, got low={low:g} (use a small positive low such as 1e-6 for 'near 0')")
    if step is not None:
        if log:
            raise ConfigError(f"{entry}: step does not go with log: true")
        if not _is_number(step) or not math.isfinite(step) or step <= 0 or (kind == "int" and not float(step).is_integer()):
            raise ConfigError(f"{entry}: step must be a positive {'integer' if kind == 'int' else 'number'}, got {describe_value(step)}")
    if kind == "int":
        return Dimension(key, "int", int(low), int(high), log=log, step=int(step) if step is not None else None)
    return Dimension(key, "float", float(low), float(high), log=log, step=float(step) if step is not None else None)


def _numeric_kind(key: str, info: Any) -> str | None:
    """``"int"`` or ``"float"`` for a numeric config key (optional ones included), None otherwise."""
    if key == RATIO_KEY:
        return "float"
    ann = getattr(info, "annotation", None)
    text = str(ann)
    if ann is int or text in ("int | None", "typing.Optional[int]"):
        return "int"
    if ann is float or text in ("float | None", "typing.Optional[float]"):
        return "float"
    return None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _get(tree: dict[str, Any], dotted: str) -> Any:
    node: Any = tree
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def _copy(tree: dict[str, Any]) -> dict[str, Any]:
    return {k: _copy(v) if isinstance(v, dict) else v for k, v in tree.items()}
