"""Opening a trained run: its catalogue, a checkpoint, and the check that they belong together.

Every reader of a checkpoint goes through here: the RL stage (its SFT start),
``di eval``, serving and the benchmarks. A checkpoint is ``best/`` (a saved
backbone) or ``last/`` (the trainer's state, weights taken from it and the
architecture from ``best/`` beside it) of an ``sft/`` or ``rl/`` folder;
:func:`check_provenance` refuses one trained on another dataset or other SIDs
than the run's (the fingerprints ``best/sft.json``, ``rl.json`` or the
folder's ``stage.json`` recorded), and one whose training has not finished.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..artifacts import MANIFEST, STAGE_MARKER, artifact_fingerprint
from ..backbones.base import BACKBONE_FILE, SIDCatalog
from ..data.model import Dataset, load_dataset
from ..errors import DeepInterestError
from ..registry import get
from .loop import BEST, STATE_FILE
from .rl import RL_FILE
from .sft import SFT_FILE


def load_catalog(dataset: Dataset, sids_dir: Path) -> SIDCatalog:
    """The SID catalogue, checked to list the dataset's items in the same order."""
    catalog = SIDCatalog.load(sids_dir)
    if catalog.item_ids != [item.id for item in dataset.items]:
        raise DeepInterestError(f"{sids_dir}: the SIDs were made for another dataset; "
                                "run `di tokenize` on this dataset again")
    return catalog



def _load_saved(folder: Path, catalog: SIDCatalog):
    kind = json.loads((folder / BACKBONE_FILE).read_text("utf-8"))["kind"]
    return get("backbones", kind).load(folder, catalog)


def load_checkpoint(checkpoint: Path, catalog: SIDCatalog):
    """A saved backbone (``best/``), or a training folder's ``last/`` state.

    ``last/`` holds the trainer's state rather than a saved backbone: the
    architecture comes from ``best/`` beside it (the same run) and the weights
    from ``last/``.
    """
    checkpoint = Path(checkpoint)
    if (checkpoint / BACKBONE_FILE).is_file():
        return _load_saved(checkpoint, catalog)
    best = checkpoint.parent / BEST
    if (checkpoint / STATE_FILE).is_file() and (best / BACKBONE_FILE).is_file():
        backbone = _load_saved(best, catalog)
        state = torch.load(checkpoint / STATE_FILE, map_location="cpu", weights_only=False)
        backbone.load_state_dict(state["model"])
        return backbone
    if not checkpoint.is_dir():
        raise DeepInterestError(f"{checkpoint}: checkpoint folder not found")
    raise DeepInterestError(f"{checkpoint}: no {BACKBONE_FILE}; is this a `di train` "
                            "checkpoint (the best or last folder of sft/ or rl/)?")


def _recorded_inputs(checkpoint: Path) -> dict[str, str] | None:
    """The dataset and SIDs fingerprints a checkpoint was trained on, where recorded."""
    for path in (checkpoint / SFT_FILE, checkpoint / RL_FILE, checkpoint.parent / STAGE_MARKER,
                 checkpoint.parent / MANIFEST):
        with contextlib.suppress(FileNotFoundError, json.JSONDecodeError, AttributeError):
            found = json.loads(path.read_text("utf-8")).get("inputs")
            if found:
                return found
    return None


def run_fingerprints(dataset_dir: Path, sids_dir: Path) -> dict[str, str]:
    return {"dataset": artifact_fingerprint(dataset_dir), "sids": artifact_fingerprint(sids_dir)}


def check_provenance(checkpoint: Path, dataset_dir: Path, sids_dir: Path,
                     fingerprints: dict[str, str] | None = None, *,
                     finished: bool = True) -> None:
    """Refuse a checkpoint trained on another dataset or other SIDs than the run's.

    A catalogue of the same shape would load and score, and the numbers would
    mean nothing. Checkpoints that record nothing are refused too, and so is a
    checkpoint of a training folder whose run has not finished (no manifest),
    unless ``finished`` is false (a benchmark scoring a run it stopped, and saying so).
    """
    recorded = _recorded_inputs(checkpoint)
    if recorded is None:
        raise DeepInterestError(
            f"{checkpoint}: records no dataset or SIDs fingerprint (no sft.json or rl.json, "
            "no stage manifest), so it cannot be checked against this run's; use a "
            "checkpoint that `di train` wrote, or train again")
    training = checkpoint.parent
    if finished and (training / STAGE_MARKER).is_file() and not (training / MANIFEST).is_file():
        raise DeepInterestError(
            f"{training}: its training has not finished (no {MANIFEST}: stopped or killed); "
            "rerun `di train` (or `di run`) to resume it")
    found = fingerprints or run_fingerprints(dataset_dir, sids_dir)
    current = {"dataset": (dataset_dir, found["dataset"]), "sids": (sids_dir, found["sids"])}
    for key, (folder, fingerprint) in current.items():
        if recorded.get(key, fingerprint) != fingerprint:
            raise DeepInterestError(
                f"{checkpoint} was trained on another {key} artifact ({recorded[key][:12]}) than "
                f"{folder} ({fingerprint[:12]}); use it with the run it was trained in, or "
                "train again on this one")


@dataclass(frozen=True)
class TrainedRun:
    """A checkpoint with the dataset and catalogue it was trained on."""

    dataset: Dataset
    catalog: SIDCatalog
    backbone: Any


def open_trained(dataset_dir: str | Path, sids_dir: str | Path, checkpoint: str | Path, *,
                 fingerprints: dict[str, str] | None = None,
                 finished: bool = True) -> TrainedRun:
    """The one way to open a trained run: :func:`check_provenance` (``finished`` as
    there), then the dataset, its catalogue and the checkpoint's backbone."""
    dataset_dir, sids_dir, checkpoint = Path(dataset_dir), Path(sids_dir), Path(checkpoint)
    if not checkpoint.is_dir():
        raise DeepInterestError(f"{checkpoint}: checkpoint folder not found")
    check_provenance(checkpoint, dataset_dir, sids_dir, fingerprints, finished=finished)
    dataset = load_dataset(dataset_dir)
    catalog = load_catalog(dataset, sids_dir)
    return TrainedRun(dataset, catalog, load_checkpoint(checkpoint, catalog))


__all__ = ["TrainedRun", "check_provenance", "load_catalog", "load_checkpoint", "open_trained",
           "run_fingerprints"]
