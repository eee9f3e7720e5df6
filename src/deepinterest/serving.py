"""Serving: top-K recommendations from a trained run (``di recommend``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .data.model import Dataset
from .data.splits import DEFAULT_MAX_HISTORY
from .errors import DeepInterestError
from .eval.metrics import DEFAULT_BEAM
from .layout import RunLayout
from .stages import ConfigLike, as_config, run_hybrid

@dataclass(frozen=True)
class Recommendation:
    """One recommended item: 1-based ``rank``, the dataset's ``item`` id, its ``title``,
    the model's ``score`` (log-probability of the item's SID; a merge's fused score with
    several SID views, ``[hybrid]`` or an ensemble) and the ``sid`` codes."""

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

    def __init__(self, dataset: Dataset, catalog: Any, backbone: Any, *,
                 beam: int = DEFAULT_BEAM, max_history: int = DEFAULT_MAX_HISTORY,
                 companion: Any = None):
        from .backbones.trie import SIDTrie

        self.dataset, self.catalog, self.backbone = dataset, catalog, backbone
        self.companion = companion  # [hybrid]'s SASRec (eval.generative.Companion) or None
        self.beam, self.max_history = beam, max_history
        self._trie = SIDTrie.from_catalog(catalog)
        self._items = {item.id: n for n, item in enumerate(dataset.items)}
        self._users = {user.id: n for n, user in enumerate(dataset.users)}

    def recommend(self, user: str, k: int = 10) -> list[Recommendation]:
        """Top-``k`` next items for a user of the dataset, from their whole history."""
        row = self._user_row(user)
        return self._recommend([self.dataset.users[row].items], [row], k)[0]

    def recommend_histories(self, histories: Sequence[Sequence[str]],
                            k: int = 10) -> list[list[Recommendation]]:
        """Top-``k`` next items for each history of item ids (oldest first), e.g. for
        users the dataset has never seen. Unknown item ids are an error."""
        return self._recommend(self._history_rows(histories), None, k)

    def _user_row(self, user: str) -> int:
        if user not in self._users:
            raise DeepInterestError(f"unknown user {user!r}; the dataset has "
                                    f"{len(self._users)} users")
        return self._users[user]

    def _history_rows(self, histories: Sequence[Sequence[str]]) -> list[tuple[int, ...]]:
        rows = []
        for history in histories:
            unknown = [i for i in history if i not in self._items]
            if unknown or not history:
                raise DeepInterestError(f"history {list(history)[:5]}: "
                                        + (f"unknown item(s) {unknown[:5]}" if unknown
                                           else "empty"))
            rows.append(tuple(self._items[i] for i in history))
        return rows

    def _recommend(self, histories, users, k: int) -> list[list[Recommendation]]:
        _check_k(k, self.beam)
        return self._rows(self._beam(histories, users, k))

    def _beam(self, histories, users, k: int):
        from .eval.generative import recommend

        return recommend(self.backbone, self.catalog, histories, users=users, beam=self.beam,
                         topk=k, max_history=self.max_history, trie=self._trie,
                         companion=self.companion)

    def _rows(self, recs) -> list[list[Recommendation]]:
        return [[self._row(r, i, s) for r, (i, s) in enumerate(zip(items, scores)) if i >= 0]
                for items, scores in zip(recs.items.tolist(), recs.scores.tolist())]

    def _row(self, rank: int, item: int, score: float) -> Recommendation:
        found = self.dataset.items[item]
        return Recommendation(rank + 1, found.id, found.fields.get("title", ""), float(score),
                              tuple(self.catalog.sids[item].tolist()))


class EnsembleRecommender:
    """Several trained runs of one dataset served as one (``eval/ensemble.py``).

    Each member's beam hands over ``candidates`` items (default: the smallest
    member beam) and the lists are merged item by item with ``rule``
    (``"probability"`` or ``"rrf"``) and ``weights``. Members trained on
    different SIDs of the catalogue (plain, collaborative slot, interest
    SIDs) disagree most, which is where merging pays (docs/training.md).
    A recommendation's ``score`` is the fused score and its ``sid`` the first
    member's SID of the item.
    """

    def __init__(self, members: Sequence[Recommender], *, weights: Sequence[float] | None = None,
                 rule: str = "probability", candidates: int | None = None):
        from .eval.ensemble import check_fusion

        if not members:
            raise DeepInterestError("an ensemble needs at least one trained run")
        try:
            check_fusion(len(members), rule, weights)
        except ValueError as exc:
            raise DeepInterestError(str(exc)) from None
        first = members[0]
        for member in members[1:]:
            if [i.id for i in member.dataset.items] != [i.id for i in first.dataset.items] \
                    or member._users != first._users:
                raise DeepInterestError("every member must be a run of the same dataset "
                                        "(same items and users, in the same order)")
        smallest = min(m.beam for m in members)
        self.candidates = smallest if candidates is None else candidates
        _check_k(self.candidates, smallest)
        self.members, self.rule = list(members), rule
        self.weights = None if weights is None else list(weights)

    def recommend(self, user: str, k: int = 10) -> list[Recommendation]:
        """Top-``k`` next items for a user of the dataset, from their whole history."""
        first = self.members[0]
        row = first._user_row(user)
        return self._recommend([first.dataset.users[row].items], [row], k)[0]

    def recommend_histories(self, histories: Sequence[Sequence[str]],
                            k: int = 10) -> list[list[Recommendation]]:
        """Top-``k`` next items for each history of item ids (oldest first)."""
        return self._recommend(self.members[0]._history_rows(histories), None, k)

    def _recommend(self, histories, users, k: int) -> list[list[Recommendation]]:
        from .eval.ensemble import fuse

        _check_k(k, self.candidates)
        lists = [m._beam(histories, users, self.candidates) for m in self.members]
        return self.members[0]._rows(fuse(lists, weights=self.weights, rule=self.rule, topk=k))


def _check_k(k, beam: int) -> None:
    if isinstance(k, bool) or not isinstance(k, int):
        raise DeepInterestError(f"k must be a whole number of items; got {k!r}")
    if not 1 <= k <= beam:
        raise DeepInterestError(f"k must be between 1 and the beam width ({beam}); got {k}")


def load_recommender(config: ConfigLike = None, *, checkpoint: str | Path | None = None,
                     beam: int | None = None) -> Recommender:
    """Load a finished run's checkpoint (default: what ``evaluate_run`` scores) with its
    dataset and SIDs, after checking the checkpoint was trained on them (and, with
    ``[hybrid] enabled``, the run's SASRec, whose lists it merges in)."""
    from .train.checkpoints import open_trained

    cfg = as_config(config)
    run_ = RunLayout(cfg.workdir)
    explicit = checkpoint
    checkpoint = Path(checkpoint or run_.final_checkpoint(cfg.train.rl.enabled))
    if not checkpoint.is_dir():
        stage = "di.train_rl, as [train.rl] is enabled" if cfg.train.rl.enabled and \
            explicit is None else "di.train_sft"
        raise DeepInterestError(f"no checkpoint at {checkpoint}; train the run first "
                                f"(di.run or {stage})")
    trained = open_trained(run_.dataset, run_.sids, checkpoint)
    companion = None
    if (hybrid := run_hybrid(cfg)) is not None:  # SASRec's lists merged in, as `di eval` does
        from .train.sasrec import load_companion

        companion = load_companion(hybrid[1], trained.dataset, hybrid[0])
        if hybrid[0].rule == "learned":
            companion = companion._replace(reranker=_fitted_merge(run_.eval, checkpoint,
                                                                  hybrid[1]))
    return Recommender(trained.dataset, trained.catalog, trained.backbone,
                       beam=beam or cfg.eval.beam, max_history=cfg.split.max_history,
                       companion=companion)


def _fitted_merge(eval_dir: Path, checkpoint: Path, sasrec_dir: Path):
    """The reranker `di eval` fitted for this checkpoint and SASRec, or a clear error."""
    from .artifacts import fingerprint_paths
    from .eval.rerank import load_reranker
    from .train.sasrec import sasrec_fingerprint

    reranker, meta = load_reranker(eval_dir)
    if (meta.get("checkpoint"), meta.get("sasrec")) != (fingerprint_paths([checkpoint]),
                                                        sasrec_fingerprint(sasrec_dir)):
        raise DeepInterestError(f"{eval_dir}: the learned merge there was fitted for another "
                                f"checkpoint or SASRec than {checkpoint}; run `di eval` "
                                "for this one first")
    return reranker


def load_ensemble(configs: Sequence[ConfigLike], *, weights: Sequence[float] | None = None,
                  rule: str = "probability", beam: int | None = None) -> EnsembleRecommender:
    """Load several finished runs of one dataset (their final checkpoints) as one
    :class:`EnsembleRecommender`."""
    return EnsembleRecommender([load_recommender(c, beam=beam) for c in configs],
                               weights=weights, rule=rule)


def recommend(user: str, config: ConfigLike = None, *, k: int = 10,
              checkpoint: str | Path | None = None) -> list[Recommendation]:
    """Top-``k`` items for one user of a trained run (``di recommend --user``); load a
    ``Recommender`` once instead when recommending for many."""
    cfg = as_config(config)
    return load_recommender(cfg, checkpoint=checkpoint,
                            beam=max(cfg.eval.beam, k)).recommend(user, k)
