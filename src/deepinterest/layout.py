"""Where each artifact of a run lives: one place that spells the run folder's paths.

    <workdir>/config.yaml  run.json
              dataset/  interests/  sids/  sft/{best,last}/  rl/  eval/  baseline/

The CLI and the chain both find folders through :class:`RunLayout`, so a
stage's folder name is written once (docs/pipeline.md describes each).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RunLayout:
    """The folders and files of one run, under ``root`` (the config's ``workdir``)."""

    root: Path

    def __init__(self, root: str | Path):
        object.__setattr__(self, "root", Path(root))

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def summary(self) -> Path:
        return self.root / "run.json"

    @property
    def dataset(self) -> Path:
        return self.root / "dataset"

    @property
    def interests(self) -> Path:
        return self.root / "interests"

    @property
    def sids(self) -> Path:
        return self.root / "sids"

    @property
    def sft(self) -> Path:
        return self.root / "sft"

    @property
    def rl(self) -> Path:
        return self.root / "rl"

    @property
    def eval(self) -> Path:
        return self.root / "eval"

    @property
    def baseline(self) -> Path:
        return self.root / "baseline"

    @property
    def checkpoint(self) -> Path:
        """The checkpoint evaluated by default: SFT's best."""
        return self.sft / "best"
