"""A run's train/validation split is part of its identity.

Fine-tuning from an earlier run's weights on the same data with another split
seed quietly validates on samples the earlier run trained on: the validation
score is inflated, and nothing in the curves shows it. So every run records
its split (:class:`SplitRecord`: the dataset's fingerprint, the split seed,
the held-out fraction, the training subset) as the MLflow tag
``paramdoctor.split`` and inside its checkpoints, and a run that starts from
another's weights on the same data (same fingerprint) reuses that run's split
(``data.split_seed: null``) or is refused when its validation set would hold
any of the other run's training samples.

The fingerprint is a sha256 of the labels and the pixels (in-memory datasets)
or of the sorted file list with sizes and classes (image folders): the same
data under another path is the same data.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from paramdoctor.data.split import split_indices
from paramdoctor.errors import ConfigError, InputError

FINGERPRINT_CHARS = 16


@dataclass(frozen=True)
class SplitRecord:
    """How a run divided its dataset into training and validation samples."""

    dataset: str
    fingerprint: str | None  # None: an older run that did not record one (matched by dataset name)
    seed: int
    val_fraction: float
    subset: int | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_mapping(cls, data: object, where: str) -> "SplitRecord":
        if not isinstance(data, dict):
            raise InputError(f"{where}: the recorded split is not a mapping")
        try:
            subset = data.get("subset")
            return cls(
                dataset=str(data["dataset"]),
                fingerprint=None if data.get("fingerprint") is None else str(data["fingerprint"]),
                seed=int(data["seed"]),
                val_fraction=float(data["val_fraction"]),
                subset=None if subset in (None, "null", "None") else int(subset),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{where}: the recorded split is unreadable ({exc})") from exc

    def same_data(self, other: "SplitRecord") -> bool:
        if self.fingerprint is not None and other.fingerprint is not None:
            return self.fingerprint == other.fingerprint
        return self.dataset == other.dataset


def fingerprint_arrays(images: np.ndarray, labels: np.ndarray) -> str:
    """sha256 of the labels and the pixels (shape and dtype included)."""
    digest = hashlib.sha256()
    for array in (np.ascontiguousarray(labels), np.ascontiguousarray(images)):
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(memoryview(array).cast("B"))
    return digest.hexdigest()[:FINGERPRINT_CHARS]


def fingerprint_files(root: str | Path, samples: list[tuple[str, int]]) -> str:
    """sha256 of the sorted (relative path, size, class) of every file of an image folder."""
    root = Path(root)
    digest = hashlib.sha256()
    for path, target in sorted(samples):
        p = Path(path)
        digest.update(f"{p.relative_to(root).as_posix()}\0{p.stat().st_size}\0{target}\n".encode())
    return digest.hexdigest()[:FINGERPRINT_CHARS]


def choose_split(
    labels: np.ndarray,
    *,
    dataset: str,
    fingerprint: str,
    seed: int,
    split_seed: int | None,
    val_fraction: float,
    subset: int | None,
    parent: SplitRecord | None,
    parent_where: str = "model.weights",
) -> tuple[np.ndarray, np.ndarray, SplitRecord]:
    """The training and validation indices of this run, and its record.

    ``parent`` is the split of the run whose weights this one starts from.
    On the same data, a null ``split_seed`` takes the parent's seed; in every
    case a validation set that holds any parent training sample is refused.
    """
    same = parent is not None and parent.same_data(SplitRecord(dataset, fingerprint, 0, val_fraction))
    chosen_seed = split_seed if split_seed is not None else (parent.seed if same else seed)
    train, val = split_indices(labels, val_fraction=val_fraction, seed=chosen_seed, subset=subset)
    record = SplitRecord(dataset, fingerprint, int(chosen_seed), float(val_fraction), subset)
    if same:
        assert parent is not None
        try:
            parent_train, _ = split_indices(
                labels, val_fraction=parent.val_fraction, seed=parent.seed, subset=parent.subset
            )
        except ConfigError:
            parent_train = np.arange(0)  # the recorded split does not fit this data: nothing to compare
        leaked = np.intersect1d(parent_train, val).size
        if leaked:
            fix = (
                f"set data.split_seed=null and data.val_fraction={parent.val_fraction} to reuse its split"
                if split_seed is not None or val_fraction != parent.val_fraction
                else "use a different dataset"
            )
            raise ConfigError(
                f"{parent_where}: that run trained on {leaked} of this run's {val.size} validation samples "
                f"({dataset}, its split seed {parent.seed}, val_fraction {parent.val_fraction}; this run's seed {chosen_seed}, "
                f"val_fraction {val_fraction}): validating on them would inflate the score; {fix}"
            )
    return train, val, record


def split_of_weights(value: str | None) -> SplitRecord | None:
    """The split recorded by the run or checkpoint ``model.weights`` names; None when there is none.

    ``runs:/<id>/...``: the run's ``paramdoctor.split`` tag, else its logged
    params (runs made before the tag existed). A checkpoint file: its
    ``split`` entry. Torchvision weight names have no split. Unreadable
    sources give None here; loading the weights reports them properly.
    """
    from paramdoctor import keys

    if not value:
        return None
    if value.startswith("runs:/"):
        run_id = value[len("runs:/") :].strip("/").split("/", 1)[0]
        if not run_id:
            return None
        from mlflow.tracking import MlflowClient

        from paramdoctor.tracking.run import resolve_tracking_uri
        from paramdoctor.tracking.store import prepare_store

        try:
            prepare_store(resolve_tracking_uri(), create=False)
            run = MlflowClient(tracking_uri=resolve_tracking_uri()).get_run(run_id)
        except Exception:  # no such run, no server: the weights loader says so
            return None
        tags, params = run.data.tags, run.data.params
        where = f"model.weights={value}"
        if keys.TAG_SPLIT in tags:
            try:
                return SplitRecord.from_mapping(json.loads(tags[keys.TAG_SPLIT]), where)
            except json.JSONDecodeError:
                return None
        if "data.dataset" in params and "data.val_fraction" in params:
            seed = params.get("data.split_seed") if params.get("data.split_seed") not in (None, "null") else params.get("seed", "0")
            return SplitRecord.from_mapping(
                {
                    "dataset": params["data.dataset"],
                    "fingerprint": None,
                    "seed": seed,
                    "val_fraction": params["data.val_fraction"],
                    "subset": params.get("data.subset"),
                },
                where,
            )
        return None
    path = Path(value).expanduser()
    if not path.is_file():
        return None
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. "Detected pickle protocol 4": a file torch cannot read is judged elsewhere
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except Exception:
            try:
                obj = torch.load(path, map_location="cpu", weights_only=True)
            except Exception:
                return None
    if isinstance(obj, dict) and isinstance(obj.get("split"), dict):
        try:
            return SplitRecord.from_mapping(obj["split"], f"model.weights={value}")
        except InputError:
            return None
    return None
