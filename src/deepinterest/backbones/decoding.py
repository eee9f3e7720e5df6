"""Trie-constrained beam search over SIDs, batched over users and beams.

Drives any :class:`~deepinterest.backbones.base.GenerativeBackbone` through
its decode protocol (``start`` once, ``expand`` to the beams, one ``step`` per
SID position) and returns each user's best ``k`` distinct items (beam 20,
top 10 in the evaluation protocol of docs/data.md).

Design decisions:

- Everything is a tensor op over ``[users, beam, ...]``; the only Python loop
  is over the ``P`` SID positions. The trie is a dense table per position
  (:mod:`.trie`), so masking and advancing every row is one gather each.
- Scores are the summed log-probabilities the model gives over its *full*
  vocabulary. Disallowed tokens are set to ``-inf`` but the allowed ones are
  not renormalised: this is what Hugging Face ``generate`` with a masking
  logits processor computes (log-softmax first, processors after), so the two
  rank identically, and a model trained with full-vocabulary cross-entropy is
  scored by the quantity it was trained on.
- The first step scores one row per user (``expand(state, 1)``): before the
  first token all beams would hold the same empty prefix, so running them
  would cost ``beam`` times the work and duplicate paths. Later steps use
  ``expand(state, beam)``. Beams are distinct paths and SIDs are unique, so
  the returned items are distinct.
- Where a user has fewer valid continuations than beams, the extra beams are
  dead (score ``-inf``); they sort last and are cut off by
  ``k = min(topk, beam, items)``, which never exceeds the live beams (each
  live node has a child, so the live count never shrinks and ends at
  ``min(beam, items)``).
- Ties are broken deterministically: of candidates with equal scores, the one
  with the better-ranked parent beam wins, then the smaller code (the order
  of a stable descending sort over ``(parent, code)``). ``torch.topk`` alone
  gives no such guarantee; :func:`_best` adds it at top-k cost.
- Runs under ``torch.inference_mode``; accumulates in float32 whatever dtype
  the model returns.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from ..errors import DeepInterestError
from ..eval.metrics import DEFAULT_BEAM
from .base import GenerativeBackbone, HistoryBatch
from .trie import SIDTrie


class BeamResult(NamedTuple):
    """Each user's best items, best first."""

    items: torch.Tensor  # int64 [B, k] item indices
    scores: torch.Tensor  # float32 [B, k] summed log-probabilities of the SID tokens
    sids: torch.Tensor  # int64 [B, k, P] codes of the items' SIDs


class _Beams(NamedTuple):
    scores: torch.Tensor  # [B, beam]; -inf for dead beams
    nodes: torch.Tensor  # [B, beam] trie node ids at the current depth
    codes: torch.Tensor  # [B, beam, p] codes chosen so far


@torch.inference_mode()
def constrained_beam_search(
    model: GenerativeBackbone, batch: HistoryBatch, trie: SIDTrie, *,
    beam: int = DEFAULT_BEAM, topk: int = 10,
) -> BeamResult:
    """Top ``min(topk, beam, items)`` valid items per user by beam search under the trie."""
    catalog = model.catalog
    _check_arguments(catalog.sizes, trie, beam, topk)
    device = batch.items.device
    trie = trie.to(device)
    offsets = catalog.offsets.to(device)
    users = batch.size
    start = model.start(batch)
    states = (model.expand(start, 1), model.expand(start, beam))
    beams = _initial_beams(users, device)
    reorder = getattr(model, "reorder", None)  # optional: lets a per-beam cache follow the beams
    for p in range(trie.positions):
        rows = beams.scores.numel()  # users at the first step, users x beam after
        prefix = (beams.codes + offsets[:p]).reshape(rows, p)
        log_probs = model.step(states[p > 0], prefix)
        if log_probs.shape != (rows, catalog.vocab_size):
            raise DeepInterestError(
                f"{type(model).__name__}.step returned shape {tuple(log_probs.shape)}, "
                f"expected ({rows}, {catalog.vocab_size}) (rows = users x beams, vocab)"
            )
        level = _level_scores(log_probs, trie, p, beams.nodes, int(offsets[p]))
        beams, parents = _extend(beams, level, trie, p, beam)
        if reorder is not None and p + 1 < trie.positions:
            reorder(states[1], parents)
    k = min(topk, beam, trie.num_items)
    return BeamResult(trie.item_of(beams.nodes[:, :k]), beams.scores[:, :k], beams.codes[:, :k])


def _check_arguments(sizes: tuple[int, ...], trie: SIDTrie, beam: int, topk: int) -> None:
    if beam < 1 or topk < 1:
        raise DeepInterestError(f"beam ({beam}) and topk ({topk}) must be at least 1")
    if tuple(sizes) != trie.sizes:
        raise DeepInterestError(
            f"the model's catalogue has codebook sizes {tuple(sizes)} but the trie was built for "
            f"{trie.sizes}; build the trie with SIDTrie.from_catalog(model.catalog)"
        )


def _initial_beams(users: int, device: torch.device) -> _Beams:
    """One empty beam per user, at the root."""
    scores = torch.zeros((users, 1), device=device)
    nodes = torch.zeros((users, 1), dtype=torch.long, device=device)
    codes = torch.zeros((users, 1, 0), dtype=torch.long, device=device)
    return _Beams(scores, nodes, codes)


def _level_scores(
    log_probs: torch.Tensor, trie: SIDTrie, p: int, nodes: torch.Tensor, offset: int
) -> torch.Tensor:
    """Log-probs [B, beam, sizes[p]] of position ``p``'s codes, -inf where the trie forbids them."""
    users, beam = nodes.shape
    size = trie.sizes[p]
    level = log_probs[:, offset : offset + size].float().reshape(users, beam, size)
    allowed = trie.allowed_mask(p, nodes.reshape(-1)).reshape(users, beam, size)
    return level.masked_fill(~allowed, float("-inf"))


def _extend(
    beams: _Beams, level: torch.Tensor, trie: SIDTrie, p: int, beam: int
) -> tuple[_Beams, torch.Tensor]:
    """Keep each user's ``beam`` best (beam, code) continuations; also their parent beams."""
    users, width, size = level.shape
    total = (beams.scores.unsqueeze(-1) + level).reshape(users, width * size)
    scores, flat = _best(total, beam)
    parent, code = flat // size, flat % size
    # A dead beam may carry an invalid code (child -1); park it on node 0 so later
    # gathers stay in range. Its score is -inf, so it can never come back to life.
    nodes = trie.advance(p, beams.nodes.gather(1, parent), code).clamp(min=0)
    kept = beams.codes.gather(1, parent.unsqueeze(-1).expand(-1, -1, p))
    return _Beams(scores, nodes, torch.cat([kept, code.unsqueeze(-1)], dim=-1)), parent


def _best(total: torch.Tensor, beam: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``beam`` largest entries per row, best first; ties go to the smaller column.

    Same result as a stable descending sort, at the cost of a top-k: a full sort
    of ``beam x codes`` candidates per user took most of the search's own time.
    ``topk`` finds the k-th score; every larger entry is kept, and of the entries
    equal to it the leftmost ones fill the remaining places. With fewer
    candidates than beams (a first level smaller than the beam), the missing
    beams are dead: score -inf on candidate 0.
    """
    k = min(beam, total.shape[1])
    kth = torch.topk(total, k, dim=1).values[:, -1:]
    above, tied = total > kth, total == kth
    keep = above | (tied & (tied.cumsum(1) <= k - above.sum(1, keepdim=True)))
    index = keep.nonzero()[:, 1].view(-1, k)  # row-major: ascending columns within a row
    scores, order = torch.sort(total.gather(1, index), dim=1, descending=True, stable=True)
    index = index.gather(1, order)
    if k < beam:
        scores = torch.nn.functional.pad(scores, (0, beam - k), value=float("-inf"))
        index = torch.nn.functional.pad(index, (0, beam - k), value=0)
    return scores, index
