"""Evaluation and serving of generative backbones by trie-constrained beam search.

:func:`recommend` turns histories into each user's top-K items (what
``di recommend`` serves); :func:`target_ranks` gives the 0-based rank of
each example's target in that list, and :func:`evaluate_generative` turns
ranks into HR@K / NDCG@K with the shared metric code of
:mod:`.metrics` (the evaluation protocol of docs/data.md: beam
20, top 10, full ranking over every valid SID, items already in the history
not removed).

Histories are processed in order of length and each batch is trimmed to its
longest history, so a batch of short histories costs short sequences; the
outputs are put back in the caller's order.

A :class:`Companion` (a run's ``[hybrid]``: a SASRec trained on the same
dataset) adds its own list to every view's beam, merged item by item with
:func:`~.ensemble.fuse` under the companion's rule and weight, or, under the rule
``"learned"``, reranked by the companion's fitted :class:`~.rerank.Reranker` from
:func:`hybrid_candidates`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch

from ..backbones.base import HistoryBatch, pad_histories
from ..backbones.decoding import constrained_beam_search
from ..backbones.trie import SIDTrie
from ..data.splits import DEFAULT_MAX_HISTORY, Example
from .ensemble import fuse
from .lists import Companion, Recommendations
from .metrics import DEFAULT_BEAM, DEFAULT_KS, NOT_FOUND, Metrics, metrics_from_ranks
from .rerank import Candidates, candidate_features


def length_batches(lengths: Sequence[int], batch_size: int) -> Iterator[np.ndarray]:
    """Row indices in batches of similar length (stable sort by length)."""
    order = np.argsort(np.asarray(lengths, dtype=np.int64), kind="stable")
    for start in range(0, len(order), batch_size):
        yield order[start:start + batch_size]


def history_batch(histories: Sequence[tuple[int, ...]], users: Sequence[int],
                  max_history: int) -> HistoryBatch:
    """Right-aligned batch trimmed to its longest history (at most ``max_history``)."""
    width = max(1, min(max_history, max((len(h) for h in histories), default=1)))
    return HistoryBatch(pad_histories(list(histories), width),
                        torch.as_tensor(list(users), dtype=torch.long))


def _device(backbone: torch.nn.Module) -> torch.device:
    param = next(backbone.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def recommend(
    backbone, catalog, histories: Sequence[tuple[int, ...]], *, users: Sequence[int] | None = None,
    beam: int = DEFAULT_BEAM, topk: int = 10, batch_size: int = 256, max_history: int = DEFAULT_MAX_HISTORY,
    trie: SIDTrie | None = None, companion: Companion | None = None,
) -> Recommendations:
    """Top-``topk`` valid items for each history (item positions, best first).

    A backbone with several SID views (a ``views()`` method, e.g.
    :class:`~deepinterest.backbones.t5_views.TwoViewT5`) is searched once per
    view, each beam handing over its ``beam`` items, and the lists merged by
    :func:`~.ensemble.fuse` (``trie`` is the first view's). A ``companion``'s
    list joins the merge (module docstring).
    """
    if companion is not None:
        return _hybrid(backbone, catalog, histories, companion, users=users, beam=beam,
                       topk=topk, batch_size=batch_size, max_history=max_history, trie=trie)
    if hasattr(backbone, "views"):
        lists = view_lists(backbone, histories, users=users, beam=beam, batch_size=batch_size,
                           max_history=max_history, trie=trie)
        return fuse(lists, topk=min(topk, beam, len(catalog.item_ids)))
    users = list(users) if users is not None else [0] * len(histories)
    trie = trie if trie is not None else SIDTrie.from_catalog(catalog)
    k = min(topk, beam, trie.num_items)
    items = torch.full((len(histories), k), -1, dtype=torch.long)
    scores = torch.full((len(histories), k), float("-inf"))
    device, was_training = _device(backbone), backbone.training
    backbone.eval()
    try:
        with torch.no_grad():
            for rows in length_batches([len(h) for h in histories], batch_size):
                batch = history_batch([histories[r] for r in rows], [users[r] for r in rows],
                                      max_history).to(device)
                res = constrained_beam_search(backbone, batch, trie, beam=beam, topk=topk)
                items[rows, :res.items.shape[1]] = res.items.cpu()
                scores[rows, :res.scores.shape[1]] = res.scores.float().cpu()
    finally:
        backbone.train(was_training)
    return Recommendations(items, scores)


def _hybrid(backbone, catalog, histories: Sequence[tuple[int, ...]], companion: Companion, *,
            beam: int, topk: int, trie: SIDTrie | None, **search) -> Recommendations:
    """Every view's beam and the companion's list, merged (``search``: users, batch size
    and max history of :func:`recommend`)."""
    from ..train.sasrec import recommend_sasrec

    topk = min(topk, len(catalog.item_ids))
    if companion.rule == "learned":
        if companion.reranker is None:
            raise ValueError("the learned merge needs a fitted reranker")
        cands = hybrid_candidates(backbone, catalog, histories, companion, beam=beam,
                                  trie=trie, **search)
        return companion.reranker.rerank(cands, topk)
    lists = _beams(backbone, catalog, histories, beam=beam, trie=trie, **search)
    own = recommend_sasrec(companion.model, histories, topk=companion.candidates)
    return merge_companion(lists, own, companion, topk=topk)


def _beams(backbone, catalog, histories: Sequence[tuple[int, ...]], *, beam: int,
           trie: SIDTrie | None, **search) -> list[Recommendations]:
    """Each view's beam (one list for a one-view backbone)."""
    if hasattr(backbone, "views"):
        return view_lists(backbone, histories, beam=beam, trie=trie, **search)
    return [recommend(backbone, catalog, histories, beam=beam, topk=beam, trie=trie, **search)]


def hybrid_candidates(backbone, catalog, histories: Sequence[tuple[int, ...]],
                      companion: Companion, *, beam: int = DEFAULT_BEAM,
                      trie: SIDTrie | None = None, lists: Sequence[Recommendations] | None = None,
                      own: Recommendations | None = None, **search) -> Candidates:
    """The learned merge's input: every view's beam (``lists`` when already searched) and
    the companion's top list (``own`` when already ranked), with the companion's
    log-probability of every candidate."""
    from ..train.sasrec import recommend_sasrec, sasrec_log_probs

    if lists is None:
        lists = _beams(backbone, catalog, histories, beam=beam, trie=trie, **search)
    if own is None:
        own = recommend_sasrec(companion.model, histories, topk=companion.candidates)
    return candidate_features([*lists, own],
                              lambda items: sasrec_log_probs(companion.model, histories, items))


def merge_companion(lists: Sequence[Recommendations], own: Recommendations,
                    companion: Companion, *, topk: int,
                    view_weights: Sequence[float] | None = None) -> Recommendations:
    """The generative ``lists`` (one per view, each weighing 1 unless ``view_weights``) and
    the companion's ``own`` list merged under the companion's rule and weight."""
    weights = [*(view_weights or [1.0] * len(lists)), companion.weight]
    return fuse([*lists, own], weights=weights, rule=companion.rule, topk=topk)


def view_lists(backbone, histories: Sequence[tuple[int, ...]], *, beam: int = DEFAULT_BEAM,
               trie: SIDTrie | None = None, **search) -> list[Recommendations]:
    """Each SID view's beam (``beam`` items per history) of a backbone with ``views()``,
    the lists :func:`recommend` merges; ``trie`` is the first view's, ``search`` takes
    :func:`recommend`'s ``users``, ``batch_size`` and ``max_history``."""
    return [recommend(view, view.catalog, histories, beam=beam, topk=beam,
                      trie=trie if n == 0 else None, **search)
            for n, view in enumerate(backbone.views())]


def target_ranks(backbone, catalog, examples: Sequence[Example], *, beam: int = DEFAULT_BEAM,
                 topk: int = 10, batch_size: int = 256, max_history: int = DEFAULT_MAX_HISTORY,
                 trie: SIDTrie | None = None, companion: Companion | None = None) -> np.ndarray:
    """0-based rank of each example's target in its top-``topk`` list, -1 when absent."""
    recs = recommend(backbone, catalog, [e.history for e in examples],
                     users=[e.user for e in examples], beam=beam, topk=topk,
                     batch_size=batch_size, max_history=max_history, trie=trie,
                     companion=companion)
    return ranks_in(recs, [e.target for e in examples], topk=topk)


def ranks_in(recs: Recommendations, targets: Sequence[int], *,
             topk: int | None = None) -> np.ndarray:
    """0-based rank of each row's target among its first ``topk`` items, -1 when absent."""
    items = recs.items if topk is None else recs.items[:, :topk]
    wanted = torch.as_tensor(list(targets), dtype=torch.long).unsqueeze(1)
    hit = items == wanted  # items are distinct in a list, so at most one hit per row
    ranks = torch.where(hit.any(1), hit.float().argmax(1), torch.full_like(wanted[:, 0], -1))
    return ranks.numpy().astype(np.int64)


def evaluate_generative(
    backbone, catalog, examples: Sequence[Example], *, beam: int = DEFAULT_BEAM, topk: int = 10,
    batch_size: int = 256, ks: Sequence[int] = DEFAULT_KS, max_history: int = DEFAULT_MAX_HISTORY,
    trie: SIDTrie | None = None, companion: Companion | None = None,
) -> Metrics:
    """HR@K and NDCG@K of the constrained beam's top-``topk`` lists (merged with a
    ``companion``'s when given)."""
    if max(ks) > topk:
        raise ValueError(f"K={max(ks)} needs topk >= {max(ks)}, got topk={topk}")
    ranks = target_ranks(backbone, catalog, examples, beam=beam, topk=topk,
                         batch_size=batch_size, max_history=max_history, trie=trie,
                         companion=companion)
    return metrics_from_ranks(ranks, ks)


__all__ = ["NOT_FOUND", "Companion", "Recommendations", "evaluate_generative", "history_batch",
           "hybrid_candidates", "length_batches", "merge_companion", "ranks_in", "recommend",
           "target_ranks", "view_lists"]
