"""Where a model's first weights come from, and loading them without surprises.

``model.weights`` is one of:

* a torchvision weight name (``DEFAULT``, ``IMAGENET1K_V1``, or the full
  ``ResNet18_Weights.IMAGENET1K_V1``), read from the torch hub cache only: this
  tool runs offline, so a missing file is an error naming where to put it
  (torchvision downloads it only when ``PARAMDOCTOR_ALLOW_DOWNLOAD=1``);
* a local checkpoint (``.pt``/``.pth``): a state dict, or a dict holding one
  under ``state_dict`` or ``model``; read with ``weights_only=True``;
* ``runs:/<run_id>/<artifact>``: a checkpoint logged by an earlier run
  (paramdoctor logs ``checkpoints/best.pt``), fetched through MLflow.

Head weights whose shape differs (new classes) are skipped and reported; any
other mismatch is an InputError, never a silently half-loaded model.
"""

from __future__ import annotations

import os
import pickle
import tempfile
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


def check_cached(source: TorchvisionWeights, value: str) -> None:
    """Raise unless the weight file is in the hub cache (or downloads are explicitly allowed)."""
    if source.cache_path.is_file() or os.environ.get(ALLOW_DOWNLOAD_ENV) == "1":
        return
    raise InputError(
        f"model.weights={value}: {source.cache_path} not found and downloads are off (offline); "
        f"place {source.weights.url.rsplit('/', 1)[-1]} there (from {source.weights.url}) or set {ALLOW_DOWNLOAD_ENV}=1 with network"
    )


def _unwrap(obj: object, where: str) -> dict[str, Tensor]:
    if isinstance(obj, dict):
        for key in ("state_dict", "model"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj or not all(isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items()):
        raise InputError(
            f"model.weights={where}: not a state dict (expected name -> tensor, or a dict with it under 'state_dict' or 'model'); "
            f"save one with torch.save(model.state_dict(), path)"
        )
    for prefix in _WRAPPER_PREFIXES:
        if all(k.startswith(prefix) for k in obj):
            obj = {k[len(prefix) :]: v for k, v in obj.items()}
    return obj


def read_checkpoint(path: Path, where: str) -> dict[str, Tensor]:
    """A state dict from ``path``, loaded on the CPU with ``weights_only=True`` (no arbitrary code)."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(
            f"model.weights={where}: cannot read {path} as a torch checkpoint ({first_line[:160]}); save it with torch.save(state_dict, path)"
        ) from None
    return _unwrap(obj, where)


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


def load_into(model: nn.Module, state: dict[str, Tensor], head_names: list[str], where: str) -> dict[str, list[str]]:
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
            f"model.weights={where}: {len(unexpected)} keys this model does not have: {_first(unexpected)}; "
            f"was the checkpoint saved from another model.name?"
        )
    mismatched = [k for k in state if k in own and state[k].shape != own[k].shape]
    wrong = [k for k in mismatched if k not in heads]
    if wrong:
        k = wrong[0]
        raise InputError(
            f"model.weights={where}: {len(wrong)} backbone tensors have other shapes, e.g. {k} "
            f"{tuple(state[k].shape)} vs {tuple(own[k].shape)}; was the checkpoint saved from another model.name?"
        )
    skipped += mismatched
    loadable = {k: v for k, v in state.items() if k not in skipped}
    missing = [k for k in own if k not in loadable]
    # checkpoints from before BatchNorm counted its batches lack these harmless counters
    not_allowed = [k for k in missing if k not in heads and not k.endswith("num_batches_tracked")]
    if not_allowed:
        raise InputError(
            f"model.weights={where}: {len(not_allowed)} model tensors missing from the checkpoint: {_first(not_allowed)}; "
            f"was it saved from another model.name?"
        )
    model.load_state_dict(loadable, strict=False)
    return {"loaded": list(loadable), "skipped": skipped, "missing": missing}
