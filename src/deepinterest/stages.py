"""The stage calls of the public API: one per stage, each on artifact folders.

Each call reads the folders of the stages before it, writes its own, skips
itself when its config and inputs are unchanged, and returns a
:class:`~deepinterest.artifacts.StageResult`. The chain (:mod:`.pipeline`) and
the package root (:mod:`.api`) both build on these, so ``di run`` and a stage
run alone cannot drift apart. Heavy dependencies are imported inside the
calls, so importing this module stays cheap.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from .artifacts import StageResult
from .config import DataConfig, MineConfig, RunConfig, TokenizeConfig, load_config
from .data.model import INFO_FILE, Dataset, load_dataset
from .errors import DeepInterestError
from .layout import RunLayout
from .train.sasrec_config import HybridConfig

ConfigLike = RunConfig | str | Path | None


def as_config(config: ConfigLike = None) -> RunConfig:
    """A ``RunConfig`` from a config, a path to a TOML/YAML file, or ``None`` (defaults)."""
    if config is None:
        return RunConfig()
    if isinstance(config, RunConfig):
        return config
    if isinstance(config, (str, Path)):
        return load_config(config)
    raise DeepInterestError(f"config must be a RunConfig, a path or None; got {type(config)}")


def read_dataset(source: str | Path = "default", *, format: str = "auto",
                 items: str | Path | None = None, kcore: int | None = None) -> Dataset:
    """A dataset from an artifact folder, ``"default"`` or any supported source (``di data
    stats``), read in memory without writing anything."""
    from .data.prepare import read_source, resolve_source

    if (Path(source) / INFO_FILE).is_file():
        return load_dataset(source)
    cfg = DataConfig(source=str(source), format=format, items=items, kcore=kcore)
    src = resolve_source(cfg.source, format=cfg.format, side=cfg.items)
    return read_source(src, kcore=cfg.kcore, synthetic=cfg.synthetic)


def prepare_data(config: DataConfig | str | Path = "default",
                 out: str | Path = RunLayout(RunConfig.model_fields["workdir"].default).dataset,
                 *, force: bool = False, keep_other: bool = False) -> StageResult:
    """Write the canonical dataset artifact (``di data prepare``) from a ``DataConfig``
    or a source (``"default"``, a data folder or a file). ``keep_other`` refuses to
    replace a dataset artifact at ``out`` that was prepared from other data or settings
    (for commands that prepare a dataset only on the side, as ``di mine`` does)."""
    from .data.prepare import prepare_dataset

    if not isinstance(config, DataConfig):
        config = DataConfig(source=str(config))
    return prepare_dataset(config, out, force=force, keep_other=keep_other)


def mine_interests(dataset: str | Path, out: str | Path, config: MineConfig | ConfigLike = None,
                   *, force: bool = False, progress: bool = True) -> StageResult:
    """Mine the deep interests of a dataset artifact's items into an ``interests`` artifact
    (``di mine``), with the miners, ensembler and labeler of ``config``'s ``[mine]``."""
    from .miners.stage import mine_stage

    cfg = config if isinstance(config, MineConfig) else as_config(config).mine
    return mine_stage(cfg, dataset, out, force=force, progress=progress)


def mining_report(interests: str | Path) -> str:
    """The printable report of an ``interests`` artifact (``di mine report``)."""
    from .miners.report import format_report

    return format_report(Path(interests))


def merge_shards(dataset: str | Path, shards: Sequence[str | Path], out: str | Path, *,
                 force: bool = False) -> StageResult:
    """Join the ``interests`` shards of a sharded mining run into one artifact
    (``di mine merge``)."""
    from .miners.shards import merge_shards as merge

    return merge(list(shards), dataset, out, force=force)


def tokenize_items(dataset: str | Path, out: str | Path,
                   config: TokenizeConfig | ConfigLike = None, *, force: bool = False,
                   progress: bool = True) -> StageResult:
    """Give every item of a dataset artifact a collision-free semantic ID (``di tokenize``).

    With ``interests = "mine"`` in the ``[tokenize]`` config, the interests
    artifact beside ``dataset`` (its run's ``interests/``) is used.
    """
    from .tokenizers.interests import resolve_interests
    from .tokenizers.stage import tokenize_items as tokenize

    cfg = config if isinstance(config, TokenizeConfig) else as_config(config).tokenize
    sibling = RunLayout(Path(dataset).parent).interests
    cfg = cfg.model_copy(update={"interests": resolve_interests(cfg.interests, sibling)})
    return tokenize(cfg, dataset, out, progress=progress, force=force)


def train_sft(config: ConfigLike = None, *, force: bool = False,
              progress: bool = True) -> StageResult:
    """Supervised fine-tuning of the backbone on the run's SIDs (``di train --stage sft``):
    reads ``<workdir>/dataset`` and ``sids`` (and ``sids-second`` with
    ``[tokenize.second]``), writes ``<workdir>/sft``."""
    from .train.stage import train_stage

    cfg = as_config(config)
    run_ = RunLayout(cfg.workdir)
    return train_stage(cfg.train, cfg.split, run_.dataset, run_.sids, run_.sft,
                       evaluation=cfg.eval, interests_dir=_run_interests(cfg, run_),
                       second_sids_dir=run_.second_sids if cfg.tokenize.second else None,
                       force=force, progress=progress)


def train_rl(config: ConfigLike = None, *, force: bool = False,
             progress: bool = True) -> StageResult:
    """GRPO from ``<workdir>/sft/best`` with ``[train.rl]``'s rewards (``di train --stage
    rl``); writes ``<workdir>/rl``. The run's interests feed the interest-aware reward."""
    from .train.stage import rl_stage

    cfg = as_config(config)
    run_ = RunLayout(cfg.workdir)
    return rl_stage(cfg.train, cfg.split, run_.dataset, run_.sids, run_.sft, run_.rl,
                    interests_dir=_run_interests(cfg, run_), evaluation=cfg.eval,
                    force=force, progress=progress)


def train_sasrec(config: ConfigLike = None, *, force: bool = False,
                 progress: bool = True) -> StageResult:
    """``[hybrid]``'s SASRec on the run's dataset (``di train --stage sasrec``): reads
    ``<workdir>/dataset``, writes ``<workdir>/sasrec``. ``di eval`` and ``di recommend``
    merge its lists with the generative model's while ``[hybrid] enabled``."""
    from .train.sasrec import sasrec_stage

    cfg = as_config(config)
    run_ = RunLayout(cfg.workdir)
    return sasrec_stage(cfg.hybrid.sasrec, run_.dataset, run_.sasrec, force=force,
                        progress=progress)


def run_hybrid(cfg: RunConfig) -> tuple[HybridConfig, Path] | None:
    """``([hybrid], its SASRec folder)`` when the run merges SASRec's lists, else None."""
    return (cfg.hybrid, RunLayout(cfg.workdir).sasrec) if cfg.hybrid.enabled else None


def _run_interests(cfg: RunConfig, run_: RunLayout) -> Path | None:
    """The run's interests artifact (RL rewards, interest tokens): when ``[mine]`` has miners and the
    folder is a finished artifact (a stale folder of a run that no longer mines is ignored)."""
    from .artifacts import MANIFEST

    if cfg.mine.miners and (run_.interests / MANIFEST).is_file():
        return run_.interests
    return None


def evaluate_run(config: ConfigLike = None, *,
                 checkpoint: str | Path | None = None) -> StageResult:
    """HR@K and NDCG@K on validation and test with constrained beam search (``di eval``);
    writes ``<workdir>/eval/metrics.json`` (read it with ``read_metrics``).

    ``checkpoint`` defaults to ``rl/best`` when ``[train.rl]`` is enabled, else
    ``sft/best``. With ``[hybrid] enabled`` the lists merge in the run's SASRec.
    """
    from .eval.stage import eval_stage

    cfg = as_config(config)
    run_ = RunLayout(cfg.workdir)
    return eval_stage(cfg.eval, cfg.split, run_.dataset, run_.sids,
                      checkpoint or run_.final_checkpoint(cfg.train.rl.enabled), run_.eval,
                      hybrid=run_hybrid(cfg))


def read_metrics(folder: str | Path) -> dict[str, dict[str, float]]:
    """``{"valid": {...}, "test": {...}}`` from a stage folder's (or a file's) metrics.json."""
    path = Path(folder)
    path = path / "metrics.json" if path.is_dir() else path
    if not path.is_file():
        raise DeepInterestError(f"no metrics at {path}; run the stage that writes it first")
    data = json.loads(path.read_text(encoding="utf-8"))
    return {split: data[split] for split in ("valid", "test")}
