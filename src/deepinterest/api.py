"""The public Python API: one call per stage, the whole chain, and serving.

Every ``di`` command is one of these calls, so a pipeline of your own can run
any stage exactly as the command line does:

    import deepinterest as di

    cfg = di.load_config("examples/default.toml")  # or di.RunConfig(workdir="runs/x")
    result = di.run(cfg)                             # data, mine, tokenize, SFT, [RL], eval
    model = di.load_recommender(cfg)
    for rec in model.recommend("U0001", k=5):
        print(rec.rank, rec.item, rec.title, rec.score)

Stages meet only through artifact folders (``docs/pipeline.md``): each call
reads the folders of the stages before it and writes its own, skips itself
when its config and inputs are unchanged, and returns a
``StageResult``. Calls that take a ``config``
accept a ``RunConfig``, a path to a TOML or YAML
config, or ``None`` for the defaults (the embedded dataset under
``runs/default``).

Heavy dependencies (torch, sentence-transformers) are imported inside the
calls, so ``import deepinterest`` stays cheap.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .artifacts import RunResult, StageResult
from .config import DataConfig, MineConfig, RunConfig, TokenizeConfig, load_config
from .data.model import INFO_FILE, Dataset, load_dataset
from .errors import DeepInterestError
from .layout import RunLayout

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


def run(config: ConfigLike = None, *, on_stage: Callable[[StageResult], None] | None = None,
        progress: bool = True) -> RunResult:
    """Run the whole chain for ``config`` under its ``workdir`` (``di run``).

    Data, mining (when ``[mine]`` has miners), tokenization, SFT, GRPO (when
    ``[train.rl] enabled``), evaluation and the most-popular baseline, in that
    order; ``on_stage`` is called with each stage's result as it finishes.
    Up-to-date stages are skipped, so an interrupted run resumes.
    """
    from .pipeline import run as run_chain

    return run_chain(as_config(config), on_stage=on_stage, progress=progress)


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


def prepare_data(config: DataConfig | str | Path = "default", out: str | Path = "runs/data",
                 *, force: bool = False) -> StageResult:
    """Write the canonical dataset artifact (``di data prepare``) from a ``DataConfig``
    or a source (``"default"``, a data folder or a file)."""
    from .data.prepare import prepare_dataset

    if not isinstance(config, DataConfig):
        config = DataConfig(source=str(config))
    return prepare_dataset(config, out, force=force)


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
    reads ``<workdir>/dataset`` and ``sids``, writes ``<workdir>/sft``."""
    from .train.stage import train_stage

    cfg = as_config(config)
    run_ = RunLayout(cfg.workdir)
    return train_stage(cfg.train, cfg.split, run_.dataset, run_.sids, run_.sft,
                       evaluation=cfg.eval, force=force, progress=progress)


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


def _run_interests(cfg: RunConfig, run_: RunLayout) -> Path | None:
    """The run's interests artifact for RL rewards: when ``[mine]`` has miners and the
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
    ``sft/best``.
    """
    from .train.stage import eval_stage

    cfg = as_config(config)
    run_ = RunLayout(cfg.workdir)
    return eval_stage(cfg.eval, cfg.split, run_.dataset, run_.sids,
                      checkpoint or run_.final_checkpoint(cfg.train.rl.enabled), run_.eval)


def read_metrics(folder: str | Path) -> dict[str, dict[str, float]]:
    """``{"valid": {...}, "test": {...}}`` from a stage folder's (or a file's) metrics.json."""
    path = Path(folder)
    path = path / "metrics.json" if path.is_dir() else path
    if not path.is_file():
        raise DeepInterestError(f"no metrics at {path}; run the stage that writes it first")
    data = json.loads(path.read_text(encoding="utf-8"))
    return {split: data[split] for split in ("valid", "test")}


@dataclass(frozen=True)
class Recommendation:
    """One recommended item: 1-based ``rank``, the dataset's ``item`` id, its ``title``,
    the model's ``score`` (log-probability of the item's SID) and the ``sid`` codes."""

    rank: int
    item: str
    title: str
    score: float
    sid: tuple[int, ...]


class Recommender:
    """A trained run loaded once, for many recommendations (``di recommend``).

    Build it with ``load_recommender``. Histories longer than the run's
    ``max_history`` keep their most recent items.
    """

    def __init__(self, dataset: Dataset, catalog: Any, backbone: Any, *, beam: int = 20,
                 max_history: int = 20):
        from .backbones.trie import SIDTrie

        self.dataset, self.catalog, self.backbone = dataset, catalog, backbone
        self.beam, self.max_history = beam, max_history
        self._trie = SIDTrie.from_catalog(catalog)
        self._items = {item.id: n for n, item in enumerate(dataset.items)}
        self._users = {user.id: n for n, user in enumerate(dataset.users)}

    def recommend(self, user: str, k: int = 10) -> list[Recommendation]:
        """Top-``k`` next items for a user of the dataset, from their whole history."""
        if user not in self._users:
            raise DeepInterestError(f"unknown user {user!r}; the dataset has "
                                    f"{len(self._users)} users")
        row = self._users[user]
        return self._recommend([self.dataset.users[row].items], [row], k)[0]

    def recommend_histories(self, histories: Sequence[Sequence[str]],
                            k: int = 10) -> list[list[Recommendation]]:
        """Top-``k`` next items for each history of item ids (oldest first), e.g. for
        users the dataset has never seen. Unknown item ids are an error."""
        rows = []
        for history in histories:
            unknown = [i for i in history if i not in self._items]
            if unknown or not history:
                raise DeepInterestError(f"history {list(history)[:5]}: "
                                        + (f"unknown item(s) {unknown[:5]}" if unknown
                                           else "empty"))
            rows.append(tuple(self._items[i] for i in history))
        return self._recommend(rows, None, k)

    def _recommend(self, histories, users, k: int) -> list[list[Recommendation]]:
        from .train.generative_eval import recommend

        if isinstance(k, bool) or not isinstance(k, int):
            raise DeepInterestError(f"k must be a whole number of items; got {k!r}")
        if not 1 <= k <= self.beam:
            raise DeepInterestError(f"k must be between 1 and the beam width ({self.beam}); "
                                    f"got {k}")
        recs = recommend(self.backbone, self.catalog, histories, users=users, beam=self.beam,
                         topk=k, max_history=self.max_history, trie=self._trie)
        return [[self._row(r, i, s) for r, (i, s) in enumerate(zip(items, scores)) if i >= 0]
                for items, scores in zip(recs.items.tolist(), recs.scores.tolist())]

    def _row(self, rank: int, item: int, score: float) -> Recommendation:
        found = self.dataset.items[item]
        return Recommendation(rank + 1, found.id, found.fields.get("title", ""), float(score),
                              tuple(self.catalog.sids[item].tolist()))


def load_recommender(config: ConfigLike = None, *, checkpoint: str | Path | None = None,
                     beam: int | None = None) -> Recommender:
    """Load a finished run's checkpoint (default: what ``evaluate_run`` scores) with its
    dataset and SIDs, after checking the checkpoint was trained on them."""
    from .train.stage import check_provenance, load_catalog, load_checkpoint

    cfg = as_config(config)
    run_ = RunLayout(cfg.workdir)
    checkpoint = Path(checkpoint or run_.final_checkpoint(cfg.train.rl.enabled))
    if not checkpoint.is_dir():
        raise DeepInterestError(f"no checkpoint at {checkpoint}; train the run first "
                                "(di.run or di.train_sft)")
    check_provenance(checkpoint, run_.dataset, run_.sids)
    dataset = load_dataset(run_.dataset)
    catalog = load_catalog(dataset, run_.sids)
    return Recommender(dataset, catalog, load_checkpoint(checkpoint, catalog),
                       beam=beam or cfg.eval.beam, max_history=cfg.split.max_history)


def recommend(user: str, config: ConfigLike = None, *, k: int = 10,
              checkpoint: str | Path | None = None) -> list[Recommendation]:
    """Top-``k`` items for one user of a trained run (``di recommend --user``); load a
    ``Recommender`` once instead when recommending for many."""
    cfg = as_config(config)
    return load_recommender(cfg, checkpoint=checkpoint,
                            beam=max(cfg.eval.beam, k)).recommend(user, k)
