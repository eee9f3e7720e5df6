"""Where each artifact of a run lives: one place that spells the run folder's paths.

    <workdir>/config.yaml  run.json
              dataset/  interests/  sids/  [sids-second/]  sft/{best,last}/  rl/{best,last}/
              [sasrec/]  eval/  baseline/

The CLI and the chain both find folders through :class:`RunLayout`, so a
stage's folder name is written once (docs/pipeline.md describes each).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


def _under_root(name: str) -> property:
    return property(lambda self: self.root / name, doc=f"``<workdir>/{name}``")


@dataclass(frozen=True)
class RunLayout:
    """The folders and files of one run, under ``root`` (the config's ``workdir``)."""

    root: Path

    def __post_init__(self):
        object.__setattr__(self, "root", Path(self.root))

    config = _under_root("config.yaml")
    summary = _under_root("run.json")
    dataset = _under_root("dataset")
    interests = _under_root("interests")
    sids = _under_root("sids")
    second_sids = _under_root("sids-second")  # [tokenize.second]'s view, when set
    sft = _under_root("sft")
    rl = _under_root("rl")
    sasrec = _under_root("sasrec")  # [hybrid]'s SASRec, when enabled
    eval = _under_root("eval")
    baseline = _under_root("baseline")

    @property
    def checkpoint(self) -> Path:
        """SFT's best checkpoint."""
        return self.sft / "best"

    @property
    def rl_checkpoint(self) -> Path:
        """GRPO's best checkpoint."""
        return self.rl / "best"

    def final_checkpoint(self, rl: bool) -> Path:
        """What `di eval` and `di recommend` use by default: RL's best when the run's
        ``[train.rl]`` is enabled, else SFT's (never a guess from what is on disk, so a stale
        ``rl/`` of an earlier config is not picked up)."""
        return self.rl_checkpoint if rl else self.checkpoint
