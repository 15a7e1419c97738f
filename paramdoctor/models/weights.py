"""Where a model's first weights come from, and loading them without surprises.

``model.weights`` is one of:

* a torchvision weight name (``DEFAULT``, ``IMAGENET1K_V1``, or the full
  ``ResNet18_Weights.IMAGENET1K_V1``), read from the torch hub cache only: this
  tool runs offline, so a missing file is an error naming where to put it
  (it is downloaded only when ``PARAMDOCTOR_ALLOW_DOWNLOAD=1``);
* a local checkpoint (``.pt``/``.pth``): a state dict, or a dict holding one
  under ``state_dict`` or ``model``;
* ``runs:/<run_id>/<artifact>``: a checkpoint logged by an earlier run
  (paramdoctor logs ``checkpoints/best.pt``), fetched through MLflow.

Every file, the hub cache's included, is read with ``torch.load(...,
weights_only=True)``: a weight file is data, and a pickle planted in a cache
or handed over as a checkpoint must not run code. torchvision's own loader
(``weights.get_state_dict``) unpickles with full pickle, so the architecture
is built here without weights (``pretrained_kwargs``) and the file loaded into
it. A file that is not a state dict (text, a truncated download, a zip of
something else, a pickled list) is an InputError that names the file and what
it holds; so is a state dict of other shapes.

Head weights whose shape differs (new classes) are skipped and reported; any
other mismatch is an InputError, never a silently half-loaded model.
"""

from __future__ import annotations

import os
import re
import tempfile
import warnings
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import Tensor, nn
from torchvision.models import WeightsEnum, get_model_weights

from paramdoctor.errors import ConfigError, InputError

ALLOW_DOWNLOAD_ENV = "PARAMDOCTOR_ALLOW_DOWNLOAD"
RUNS_PREFIX = "runs:/"
DEFAULT_RUN_ARTIFACT = "checkpoints/best.pt"
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")
# auxiliary classifiers of GoogLeNet and Inception v3, which paramdoctor builds without
AUX_HEAD_PREFIXES = ("AuxLogits.", "aux1.", "aux2.")
# wrappers that prefix every key: DistributedDataParallel, torch.compile
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")
SAVE_HINT = "save the weights with torch.save(model.state_dict(), path)"
_NOT_A_CHECKPOINT = "is not a PyTorch checkpoint (expected a state dict saved with torch.save)"
# torchvision's DenseNet files keep the keys of its old layer names ('norm.1'); torchvision renames them on load
_OLD_DENSENET_KEY = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$")


@dataclass(frozen=True)
class TorchvisionWeights:
    weights: WeightsEnum

    @property
    def cache_path(self) -> Path:
        """Where torch.hub keeps (and looks for) this file: ``<hub dir>/checkpoints/<file name of the URL>``."""
        return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(self.weights.url).path)


@dataclass(frozen=True)
class CheckpointFile:
    path: Path


@dataclass(frozen=True)
class RunArtifact:
    uri: str


WeightsSource = TorchvisionWeights | CheckpointFile | RunArtifact


def _looks_like_path(value: str) -> bool:
    return value.endswith(CHECKPOINT_SUFFIXES) or "/" in value or os.sep in value or Path(value).expanduser().exists()


def resolve_weights(value: str | None, model_name: str, *, is_torchvision: bool) -> WeightsSource | None:
    """Classify ``model.weights``; raises for names and files that cannot exist."""
    if value is None:
        return None
    if value.startswith(RUNS_PREFIX):
        rest = value[len(RUNS_PREFIX) :].strip("/")
        if not rest:
            raise ConfigError(f"model.weights={value}: no run id; write runs:/<run_id>/{DEFAULT_RUN_ARTIFACT}")
        if "/" not in rest:  # just a run id: the checkpoint paramdoctor logs
            return RunArtifact(f"{RUNS_PREFIX}{rest}/{DEFAULT_RUN_ARTIFACT}")
        return RunArtifact(f"{RUNS_PREFIX}{rest}")
    if _looks_like_path(value):
        path = Path(value).expanduser()
        if not path.is_file():
            raise InputError(f"model.weights={value}: no such checkpoint file; check the path (relative paths start at {Path.cwd()})")
        return CheckpointFile(path)
    if not is_torchvision:
        raise ConfigError(
            f"model.weights={value}: {model_name} has no torchvision weights; use a checkpoint path or runs:/<run_id>/{DEFAULT_RUN_ARTIFACT}"
        )
    enum = get_model_weights(model_name)
    member = value.split(".", 1)[1] if value.startswith(f"{enum.__name__}.") else value
    names = [w.name for w in enum]
    if member == "DEFAULT":
        return TorchvisionWeights(enum.DEFAULT)
    if member not in names:
        raise ConfigError(
            f"model.weights={value}: not a weight name of {model_name}; choose DEFAULT or one of {', '.join(names)}"
        )
    return TorchvisionWeights(enum[member])


def pretrained_kwargs(model_name: str, weights: WeightsEnum) -> dict:
    """The builder arguments torchvision itself sets for ``weights``: the architecture the file was saved from.

    Mirrors the ``weights is not None`` branches of torchvision's builders
    (class count, ViT/MaxViT input size, Inception's input transform), less
    the auxiliary heads, which paramdoctor builds without and whose tensors
    ``load_into`` skips. A test holds every torchvision weight to its
    ``num_params``.
    """
    kwargs: dict = {}
    if weights.meta.get("categories") is not None:
        kwargs["num_classes"] = len(weights.meta["categories"])
    if model_name in ("googlenet", "inception_v3"):
        kwargs.update(transform_input=True, aux_logits=False, init_weights=False)
    elif model_name.startswith("vgg"):
        kwargs["init_weights"] = False  # overwritten by the file: skip the random init
    elif model_name.startswith("vit_"):
        kwargs["image_size"] = weights.meta["min_size"][0]
    elif model_name.startswith("maxvit_"):
        kwargs["input_size"] = weights.meta["min_size"]
    return kwargs


def _missing_hub_file(source: TorchvisionWeights, value: str) -> InputError:
    return InputError(
        f"model.weights={value}: {source.cache_path} not found and downloads are off (offline); "
        f"place {source.cache_path.name} there (from {source.weights.url}) or set {ALLOW_DOWNLOAD_ENV}=1 with network"
    )


def _download(source: TorchvisionWeights, value: str) -> None:
    """Fetch the file into the hub cache, checking the hash prefix its name carries (as torch.hub does)."""
    path = source.cache_path
    match = torch.hub.HASH_REGEX.search(path.name)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(source.weights.url, str(path), match.group(1) if match else None, progress=True)
    except (OSError, RuntimeError, ValueError) as exc:  # URLError is an OSError; a hash mismatch a RuntimeError
        raise InputError(
            f"model.weights={value}: cannot download {source.weights.url} into {path} ({type(exc).__name__}: {str(exc)[:160]}); "
            f"place the file there by hand"
        ) from None


def read_torchvision_weights(source: TorchvisionWeights, value: str) -> dict[str, Tensor]:
    """The state dict of a torchvision weight, from the hub cache, read like any other file (``weights_only=True``)."""
    if not source.cache_path.is_file():
        if os.environ.get(ALLOW_DOWNLOAD_ENV) != "1":
            raise _missing_hub_file(source, value)
        _download(source, value)
    state = read_checkpoint(
        source.cache_path, value, hint=f"delete it and place an intact copy from {source.weights.url}"
    )
    renamed = OrderedDict()
    for key, tensor in state.items():
        match = _OLD_DENSENET_KEY.match(key)
        renamed[match.group(1) + match.group(2) if match else key] = tensor
    return _keep_metadata(renamed, state)


def _keep_metadata(new: dict[str, Tensor], old: object, prefix: str = "") -> dict[str, Tensor]:
    """Carry a state dict's ``_metadata`` (module versions, which e.g. MNASNet's loader needs) over to ``new``."""
    metadata = getattr(old, "_metadata", None)
    if metadata is None:
        return new
    renamed = OrderedDict()
    for key, value in metadata.items():  # keys are module paths: "", "module", "module.block1", ...
        if prefix and key == prefix[:-1]:
            key = ""
        elif prefix and key.startswith(prefix):
            key = key[len(prefix) :]
        renamed[key] = value
    new = OrderedDict(new)
    new._metadata = renamed  # type: ignore[attr-defined]
    return new


def _describe(obj: object) -> str:
    """What a loaded object is, in a few words, for the message saying it is not a state dict."""
    if isinstance(obj, Tensor):
        return f"a single tensor of shape {tuple(obj.shape)}"
    if isinstance(obj, (list, tuple)):
        return f"a {type(obj).__name__} of {len(obj)} items"
    if isinstance(obj, dict):
        if not obj:
            return "an empty dict"
        keys = ", ".join(repr(k)[:40] for k in list(obj)[:4])
        return f"a dict with keys {keys}{', ...' if len(obj) > 4 else ''}"
    name = type(obj).__name__
    return f"{'an' if name[:1] in 'aeiou' else 'a'} {name}"


def _unwrap(obj: object, path: Path, where: str) -> dict[str, Tensor]:
    if isinstance(obj, dict):
        for key in ("state_dict", "model"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj or not all(isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items()):
        raise InputError(
            f"model.weights={where}: {path} {_NOT_A_CHECKPOINT}: it holds {_describe(obj)}, "
            f"not names mapped to tensors (alone or under 'state_dict' or 'model'); {SAVE_HINT}"
        )
    for prefix in _WRAPPER_PREFIXES:
        if all(k.startswith(prefix) for k in obj):
            obj = _keep_metadata({k[len(prefix) :]: v for k, v in obj.items()}, obj, prefix)
    return obj


def _why_unreadable(path: Path, exc: Exception) -> str:
    """Why ``torch.load`` failed on ``path``, from its first bytes: what the file is rather than the unpickler's complaint."""
    try:
        with path.open("rb") as f:
            head = f.read(512)
    except OSError as err:
        return f"cannot open it ({err.strerror or err})"
    if not head:
        return "the file is empty"
    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError, ValueError):
            return "it is a truncated or damaged zip file (an interrupted save or download?)"
        if not any(n.endswith("data.pkl") for n in names):
            return f"it is a zip archive of {len(names)} files without the data.pkl that torch.save writes"
    elif head[0] != 0x80:  # every pickle torch.save writes starts with the PROTO opcode
        try:
            head.decode("utf-8")
            return "it is a text file"
        except UnicodeDecodeError:
            return "its first bytes are not those of a torch.save file"
    message = str(exc)
    if "Weights only load failed" in message:
        # torch's text: "... WeightsUnpickler error: <detail> Please use ..." (the detail may sit between blank lines)
        found = re.search(r"WeightsUnpickler error:\s*(.*?)\s*(?:Please use|Check the documentation|$)", message, re.S)
        detail = " ".join(found.group(1).split()).rstrip(".") if found else ""
        refused = "it holds Python objects that are not loaded for safety (only tensors and plain containers are)"
        return f"{refused}: {detail[:160]}" if detail else refused
    return f"it is truncated or damaged ({_first_line(exc)})"


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:160] if text else type(exc).__name__


def read_checkpoint(path: Path, where: str, *, hint: str = SAVE_HINT) -> dict[str, Tensor]:
    """A state dict from ``path``, loaded on the CPU with ``weights_only=True`` (no arbitrary code).

    ``torch.load`` on bytes that are not a torch.save file fails with whatever
    the unpickler trips on (KeyError, IndexError, AssertionError, ...), so every
    failure is caught and explained from the file itself.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "Detected pickle protocol 101" for text files
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - the unpickler raises any type on foreign bytes
        raise InputError(f"model.weights={where}: {path} {_NOT_A_CHECKPOINT}: {_why_unreadable(path, exc)}; {hint}") from None
    return _unwrap(obj, path, where)


def download_run_artifact(uri: str, dst: str) -> Path:
    """Fetch an MLflow artifact into ``dst``; a folder holding exactly one checkpoint is accepted too."""
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=dst))
    except (MlflowException, OSError) as exc:
        message = str(getattr(exc, "message", exc)).strip().splitlines()
        reason = message[0][:200] if message else type(exc).__name__
        raise InputError(
            f"model.weights={uri}: cannot fetch it from MLflow ({reason}); check MLFLOW_TRACKING_URI, the run id and the artifact path"
        ) from None
    if local.is_dir():
        found = [p for p in sorted(local.rglob("*")) if p.is_file() and p.suffix in CHECKPOINT_SUFFIXES]
        if len(found) != 1:
            raise InputError(
                f"model.weights={uri}: a folder with {len(found)} checkpoint files; name one file, e.g. runs:/<run_id>/{DEFAULT_RUN_ARTIFACT}"
            )
        local = found[0]
    return local


def read_source(source: CheckpointFile | RunArtifact, where: str) -> dict[str, Tensor]:
    """The state dict behind a checkpoint file or a run artifact."""
    if isinstance(source, CheckpointFile):
        return read_checkpoint(source.path, where)
    with tempfile.TemporaryDirectory(prefix="paramdoctor-weights-") as tmp:
        return read_checkpoint(download_run_artifact(source.uri, tmp), where)


def _first(keys: list[str], n: int = 3) -> str:
    more = f" (+{len(keys) - n} more)" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


def load_into(
    model: nn.Module,
    state: dict[str, Tensor],
    head_names: list[str],
    where: str,
    *,
    hint: str = "was the checkpoint saved from another model.name?",
) -> dict[str, list[str]]:
    """Load ``state`` into ``model``: the backbone entirely, the head when its shape fits.

    Returns ``{"loaded": [...], "skipped": [...], "missing": [...]}``: keys copied,
    checkpoint keys left out (a head for other classes, auxiliary heads), and
    model keys left at their fresh initialisation (the new head).
    """
    own = model.state_dict()
    heads = set(head_names)
    skipped = [k for k in state if k.startswith(AUX_HEAD_PREFIXES) and k not in own]
    unexpected = [k for k in state if k not in own and k not in skipped]
    if unexpected:
        raise InputError(
            f"model.weights={where}: {len(unexpected)} keys this model does not have: {_first(unexpected)}; {hint}"
        )
    mismatched = [k for k in state if k in own and state[k].shape != own[k].shape]
    wrong = [k for k in mismatched if k not in heads]
    if wrong:
        k = wrong[0]
        raise InputError(
            f"model.weights={where}: {len(wrong)} backbone tensors have other shapes, e.g. {k} "
            f"{tuple(state[k].shape)} vs {tuple(own[k].shape)}; {hint}"
        )
    skipped += mismatched
    loadable = _keep_metadata({k: v for k, v in state.items() if k not in skipped}, state)
    missing = [k for k in own if k not in loadable]
    # checkpoints from before BatchNorm counted its batches lack these harmless counters
    not_allowed = [k for k in missing if k not in heads and not k.endswith("num_batches_tracked")]
    if not_allowed:
        raise InputError(
            f"model.weights={where}: {len(not_allowed)} model tensors missing from the checkpoint: {_first(not_allowed)}; {hint}"
        )
    try:
        model.load_state_dict(loadable, strict=False)
    except (RuntimeError, ValueError, TypeError) as exc:  # e.g. a tensor that cannot be copied, a module's own version check
        raise InputError(f"model.weights={where}: cannot load the tensors into {type(model).__name__} ({_first_line(exc)}); {hint}") from None
    return {"loaded": list(loadable), "skipped": skipped, "missing": missing}
