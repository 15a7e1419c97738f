"""Read a config file, apply ``key=value`` overrides, validate into :class:`TrainConfig`.

Every failure becomes one :class:`ConfigError` line naming the key, the value
received and what was expected, with a "did you mean" for near-miss keys.
"""

from __future__ import annotations

import difflib
import re
import sys
from pathlib import Path
from typing import Any, Iterable

import yaml
from pydantic import BaseModel, ValidationError

from paramdoctor.config.schema import TrainConfig
from paramdoctor.errors import ConfigError, ParamDoctorError


_Base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's parser when present: 5-10x faster


class _Loader(_Base):  # type: ignore[misc, valid-type]
    """SafeLoader that reads ``1e-4`` and ``3E5`` as floats and checks the document before building it.

    PyYAML follows YAML 1.1, whose float pattern needs a dot, so ``lr: 1e-4``
    would load as the string ``"1e-4"``. This resolver accepts the YAML 1.2 forms.
    The composed node graph goes through :func:`_check_document` first.
    """

    def get_single_data(self) -> Any:
        node = self.get_single_node()
        if node is None:
            return None
        _check_document(node)
        return self.construct_document(node)


_FLOAT_RE = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)
_Loader.yaml_implicit_resolvers = {k: list(v) for k, v in _Base.yaml_implicit_resolvers.items()}
for _ch in list("-+0123456789."):
    _Loader.yaml_implicit_resolvers[_ch] = [
        (tag, rx) for tag, rx in _Loader.yaml_implicit_resolvers.get(_ch, []) if tag != "tag:yaml.org,2002:float"
    ]
    _Loader.yaml_implicit_resolvers[_ch].append(("tag:yaml.org,2002:float", _FLOAT_RE))


# --- limits on what a user's YAML may ask of the reader ---------------------------------

MAX_FILE_BYTES = 1 << 20
"""Largest config, rule or project file read (1 MiB): every real one is a few KiB."""
MAX_ALIAS_NODES = 10_000
"""Most nodes anchors and aliases (``&base`` / ``*base``, ``<<: *base``) may add to a document once expanded."""
MAX_DEPTH = 100
"""Deepest nesting of mappings and lists accepted (configs and rules are 2-4 levels deep)."""


class YamlRefused(yaml.YAMLError):
    """A document the loader will not build: a duplicate key, an alias bomb, runaway nesting."""

    def __init__(self, problem: str, mark: Any = None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.problem_mark = mark


def read_text_file(
    path: str | Path, what: str = "file", error: type[ParamDoctorError] = ConfigError, *, limit: int = MAX_FILE_BYTES
) -> str:
    """A user's text file as UTF-8 (a leading BOM is dropped), refused over ``limit`` bytes.

    Every failure is one ``error`` line naming the file: not found, unreadable,
    too large, or not UTF-8 (with the byte offset of the first bad byte).
    """
    path = Path(path)
    try:
        with path.open("rb") as handle:
            data = handle.read(limit + 1)
    except FileNotFoundError:
        raise error(f"{path}: {what} not found") from None
    except OSError as exc:
        raise error(f"{path}: cannot read {what} ({exc.strerror or exc})") from None
    except ValueError:  # a path holding a NUL byte, which no file name can contain
        raise error(f"{path}: cannot read {what} (the path holds a null byte); check the path") from None
    if len(data) > limit:
        raise error(f"{path}: {what} is larger than {_size(limit)}; a {what} is a few KiB of YAML, check the path")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        bad = data[exc.start : exc.start + 1].hex()
        line = data.count(b"\n", 0, exc.start) + 1
        raise error(f"{path}: {what} is not UTF-8 (byte 0x{bad} at offset {exc.start}, line {line}); save it as UTF-8") from None


def load_yaml_text(text: str, where: str) -> Any:
    """Parse a user's YAML safely: no code, no duplicate keys, bounded size, nesting and alias expansion.

    Errors are one ConfigError line naming ``where`` and the line of the problem.
    """
    if len(text) > MAX_FILE_BYTES:
        raise ConfigError(f"{where}: YAML text is larger than {_size(MAX_FILE_BYTES)}; a config or rule file is a few KiB")
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except YamlRefused as exc:
        mark = exc.problem_mark
        pos = f" line {mark.line + 1}:" if mark is not None else ""
        raise ConfigError(f"{where}:{pos} {exc.problem}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        pos = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{where}:{pos}: invalid YAML ({problem})") from None
    except UnicodeEncodeError as exc:  # lone surrogates (undecodable bytes from argv) the parser cannot encode
        raise ConfigError(f"{where}: the text is {_not_utf8(exc)}") from None
    except ValueError as exc:  # a value a constructor cannot convert; the checks above should have named it
        raise ConfigError(f"{where}: invalid value ({str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__})") from None


def _size(limit: int) -> str:
    return f"{limit >> 20} MiB" if limit >= 1 << 20 and limit % (1 << 20) == 0 else f"{limit} bytes"


def _check_document(root: yaml.Node) -> None:
    """Refuse what would make construction or the code after it blow up, before anything is built.

    PyYAML builds an alias as a shared reference, so a "billion laughs" document
    is small in memory but expands to billions of nodes for anything that walks
    it (validation, flattening, dumping). Walking the node graph once with the
    expanded size of each node memoised finds that in time linear in the
    document: the nodes aliases add beyond the document's own are capped, a
    recursive alias is refused, and so is a duplicate key in any mapping, and
    an integer longer than Python converts (``sys.get_int_max_str_digits()``,
    4300 digits), named by its dotted key.
    """
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    on_path: set[int] = set()
    names: dict[int, str] = {}  # id of a node -> its dotted key ("data.batch_size"), for messages
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            on_path.discard(key)
            kids = _children(node)
            size[key] = 1 + sum(size[id(k)] for k in kids)
            depth[key] = 1 + max((depth[id(k)] for k in kids), default=0)
            if depth[key] > MAX_DEPTH:
                raise YamlRefused(f"nesting deeper than {MAX_DEPTH} levels; flatten the document", node.start_mark)
            continue
        if key in size:
            continue
        if key in on_path:
            raise YamlRefused("an alias refers to a node that contains it (a recursive alias); remove it", node.start_mark)
        on_path.add(key)
        if isinstance(node, yaml.MappingNode):
            _reject_duplicate_keys(node)
            _name_values(node, names.get(key, ""), names)
        elif isinstance(node, yaml.ScalarNode):
            _reject_huge_int(node, names.get(key, ""))
        stack.append((node, True))
        stack.extend((kid, False) for kid in _children(node) if id(kid) not in size)
    extra = size[id(root)] - len(size)
    if extra > MAX_ALIAS_NODES:
        raise YamlRefused(
            f"anchors and aliases (&name / *name) expand the document by {extra:,} nodes, more than the "
            f"{MAX_ALIAS_NODES:,} accepted; write the repeated values out or use fewer aliases"
        )


def _name_values(node: yaml.MappingNode, prefix: str, names: dict[int, str]) -> None:
    for key_node, value_node in node.value:
        if isinstance(key_node, yaml.ScalarNode) and id(value_node) not in names:
            names[id(value_node)] = f"{prefix}.{key_node.value}" if prefix else str(key_node.value)


_INT_TAG = "tag:yaml.org,2002:int"


def _reject_huge_int(node: yaml.ScalarNode, name: str) -> None:
    """An integer with more decimal digits than ``int()`` converts (a ValueError deep in the constructor otherwise)."""
    limit = sys.get_int_max_str_digits() if hasattr(sys, "get_int_max_str_digits") else 0
    if node.tag != _INT_TAG or not limit:
        return
    text = node.value.lstrip("+-").lower()
    if text.startswith(("0x", "0b", "0o")):  # power-of-two bases have no limit
        return
    digits = sum(ch.isdigit() for ch in text)
    if digits > limit:
        raise YamlRefused(
            f"{name + ': ' if name else ''}a number of {digits} digits (at most {limit} are read); "
            "no setting needs one, check the value",
            node.start_mark,
        )


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


_MERGE_TAG = "tag:yaml.org,2002:merge"


def _reject_duplicate_keys(node: yaml.MappingNode) -> None:
    """Two scalar keys with the same tag and text in one mapping: the second would silently win."""
    seen: dict[tuple[str, str], Any] = {}
    for key_node, _ in node.value:
        if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == _MERGE_TAG:
            continue  # "<<: *base" merges; its keys may be overridden on purpose
        ident = (key_node.tag, key_node.value)
        first = seen.get(ident)
        if first is not None:
            raise YamlRefused(
                f"duplicate key {key_node.value!r} (first at line {first.line + 1}); each key may appear once in a mapping",
                key_node.start_mark,
            )
        seen[ident] = key_node.start_mark


def parse_value(text: str, where: str | None = None) -> Any:
    """An override's value, parsed as a YAML scalar/flow value (``1e-4`` -> float, ``null`` -> None).

    Text that is not YAML stays a string. With ``where`` (e.g. ``override
    optimizer.lr``), a value the loader refuses (an alias bomb, a duplicate key,
    a 5000-digit number) or text that is not UTF-8 (undecodable bytes from the
    command line) is a ConfigError naming ``where``; without it, such text also
    stays a string.
    """
    if not text.strip():
        return ""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:  # checked first: the pure-Python parser would take such text as a string
        if where is None:
            return text
        raise ConfigError(f"{where}: the value is {_not_utf8(exc)}") from None
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except YamlRefused as exc:
        if where is None:
            return text
        raise ConfigError(f"{where}: {exc.problem}") from None
    except (yaml.YAMLError, ValueError):
        return text


def _not_utf8(exc: UnicodeEncodeError) -> str:
    """Why text holding lone surrogates is refused, naming the bytes Python could not decode (``surrogateescape``)."""
    bad = exc.object[exc.start : exc.end]
    raw = bad.encode("utf-8", "surrogateescape") if all("\udc80" <= ch <= "\udcff" for ch in bad) else None
    shown = "".join(f"\\x{b:02x}" for b in raw) if raw is not None else repr(bad)[1:-1]
    return f"not UTF-8 (it holds {shown} at position {exc.start}, a byte the command line could not decode); write it in UTF-8"


def describe_value(value: Any, limit: int = 80) -> str:
    """``repr(value)`` for an error message, cut to ``limit`` characters with an ellipsis (a value may be huge)."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def read_config_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    text = read_text_file(path, "config file")
    data = load_yaml_text(text, str(path))
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config file must be a mapping of sections, got {type(data).__name__}")
    return data


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"optimizer": {"lr": 1e-3}}`` -> ``{"optimizer.lr": 1e-3}``."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``tree["a"]["b"] = value`` for ``"a.b"``, creating (or replacing non-mapping) sections on the way."""
    node = tree
    parts = dotted.split(".")
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


def unflatten(flat: dict[str, Any]) -> dict[str, Any]:
    """``{"optimizer.lr": 1e-3}`` -> ``{"optimizer": {"lr": 1e-3}}``; the inverse of :func:`flatten`."""
    tree: dict[str, Any] = {}
    for dotted, value in sorted(flat.items()):
        set_dotted(tree, dotted, value)
    return tree


def known_keys(model: type[BaseModel] = TrainConfig, prefix: str = "") -> dict[str, Any]:
    """Every dotted leaf key of the schema, with its field info."""
    keys: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        ann = info.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            keys.update(known_keys(ann, f"{prefix}{name}."))
        else:
            keys[f"{prefix}{name}"] = info
    return keys


def suggest(key: str, candidates: Iterable[str]) -> str:
    cands = list(candidates)
    match = difflib.get_close_matches(key, cands, n=1, cutoff=0.6)
    if not match:  # a near miss on the last part alone: "optimizer.lrr" -> "optimizer.lr"
        leaf = key.rsplit(".", 1)[-1]
        by_leaf = {c.rsplit(".", 1)[-1]: c for c in cands}
        leaf_match = difflib.get_close_matches(leaf, list(by_leaf), n=1, cutoff=0.75)
        match = [by_leaf[leaf_match[0]]] if leaf_match else []
    return f" (did you mean {match[0]!r}?)" if match else ""


def apply_overrides(tree: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Apply ``a.b=value`` strings to a nested dict; unknown keys fail with a suggestion."""
    keys = known_keys()
    tree = _deep_copy(tree)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected key=value, e.g. optimizer.lr=3e-4")
        key, _, raw = item.partition("=")
        key = key.strip()
        if key not in keys:
            raise ConfigError(f"override {key}: unknown config key{suggest(key, keys)}")
        set_dotted(tree, key, parse_value(raw, f"override {key}"))
    return tree


def validate(tree: dict[str, Any], where: str = "config") -> TrainConfig:
    """Validate a nested dict into a :class:`TrainConfig`, or raise one clear ConfigError."""
    try:
        return TrainConfig.model_validate(tree)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, tree, where)) from None


def load_config(path: str | Path | None = None, overrides: Iterable[str] = ()) -> TrainConfig:
    """The config a run will use: defaults, then the file, then the overrides."""
    tree = read_config_file(path) if path else {}
    where = str(path) if path else "config"
    _reject_unknown(tree, where)
    tree = apply_overrides(tree, overrides)
    return validate(tree, where)


def to_tree(config: TrainConfig) -> dict[str, Any]:
    """The config as plain YAML-ready data (tuples become lists)."""
    return config.model_dump(mode="json")


def dump_yaml(config: TrainConfig | dict[str, Any], *, annotate: bool = False) -> str:
    """The config as YAML. ``annotate`` (a TrainConfig only) adds a comment with what an "auto"
    value resolves to, e.g. ``backbone_lr: null  # auto: 0.001 (...)``; the YAML stays loadable as is."""
    tree = to_tree(config) if isinstance(config, TrainConfig) else config
    text = yaml.safe_dump(tree, sort_keys=False, default_flow_style=False, width=1000)
    if annotate and isinstance(config, TrainConfig) and config.optimizer.backbone_lr is None:
        from paramdoctor.config.resolve import backbone_lr_note

        text = re.sub(r"^(  backbone_lr: null)$", lambda m: f"{m.group(1)}  # {backbone_lr_note(config)}", text, count=1, flags=re.M)
    return text


# --- helpers ------------------------------------------------------------------


def _deep_copy(tree: dict[str, Any]) -> dict[str, Any]:
    return {k: _deep_copy(v) if isinstance(v, dict) else v for k, v in tree.items()}


def _reject_unknown(tree: dict[str, Any], where: str) -> None:
    keys = known_keys()
    sections = {k.split(".")[0] for k in keys}
    for dotted, _ in flatten(tree).items():
        if dotted in keys:
            continue
        head = dotted.split(".")[0]
        if head in sections and head in keys:  # a leaf given a mapping
            continue
        if any(k.startswith(dotted + ".") for k in keys):  # an empty section
            continue
        raise ConfigError(f"{where}: unknown config key {dotted!r}{suggest(dotted, keys)}")


def _describe(exc: ValidationError, tree: dict[str, Any], where: str) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"] if not isinstance(p, int))
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    if err["type"] == "extra_forbidden":
        return f"{where}: unknown config key {loc!r}{suggest(loc, known_keys())}"
    if not loc or loc not in known_keys():  # a cross-field check: its message names the keys
        return f"{where}: {loc + ': ' if loc else ''}{msg}"
    value = _lookup(tree, err["loc"])
    got = f", got {describe_value(value)}" if value is not _MISSING else ""
    expected = _expected(loc)
    return f"{where}: {loc}: {msg}{got}{expected}"


_MISSING = object()


def _lookup(tree: Any, loc: tuple) -> Any:
    node = tree
    for part in loc:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, (list, tuple)) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            return _MISSING
    return node


def _expected(loc: str) -> str:
    info = known_keys().get(loc)
    if info is None:
        return ""
    ann = getattr(info.annotation, "__name__", None) or str(info.annotation).replace("typing.", "")
    return f" (expected {ann}; default {info.default!r})"
