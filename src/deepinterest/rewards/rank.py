"""Rank-aware reward: MiniOneRec's exact-hit rule plus its rank penalty on wrong beams.

MiniOneRec (its ``rl.py``, reward type "ranking") draws a group's G
completions as the G beams of one constrained beam search, so they are
distinct and ordered by score, and adds two rewards: an exact-hit rule (1 or
0) and a rank penalty that is 0 for a hit and, on a wrong beam at rank i
(0-based), minus that rank's share of the group's NDCG discounts::

    penalty(i) = -(1 / log2(i + 2)) / sum_{j=0}^{G-1} 1 / log2(j + 2)

and every completion of a group with no hit gets 0 from both. This module
implements that sum as one reward (:class:`RankReward`):

- the group has a hit: a hit gets ``hit_reward`` (1.0, MiniOneRec's rule),
  a wrong beam at rank i gets ``penalty(i)``;
- the group has no hit: every completion gets 0.0.

So a confident wrong beam (rank 0) is pushed down hardest, and the
penalties of a group sum to at least -1. ``hit_reward=0`` gives MiniOneRec's
penalty term alone, to combine with a separate ``exact`` reward (adding
``exact`` to the default ``rank`` would count a hit twice).

Worked example, G = 4: the discounts 1/log2(i+2) are 1, 0.63093, 0.5,
0.43068 (sum 2.56161), so wrong beams at ranks 0..3 get -0.39038, -0.24630,
-0.19519, -0.16813.

Groups and ranks: with ``group_size`` set, the completions are cut into
consecutive groups of that size (TRL lays out a prompt's
``num_generations`` completions next to each other) and G = ``group_size``;
without it, a group is every completion sharing a prompt and G is their
count. A completion's rank i comes from the ``rank`` column (0-based, as a
rollout that runs beam search would return it) or, when there is none, from
its position within its group. Rows whose ``target`` is ``None`` get
``None`` and do not count as hits.

The reward needs a whole group in one call: under TRL with several
processes keep ``per_device_train_batch_size`` a multiple of
``num_generations`` (otherwise a group is split across processes and each
part is scored alone). With sampled rather than beam-searched groups there
is no beam order; pass ranks from the rollout (e.g. by sequence
log-probability) or the sample order is taken as the rank.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import Any

from ..schemas.sids import SIDCatalog
from ..errors import DeepInterestError
from .base import SIDReward, column


def rank_penalties(group_size: int) -> list[float]:
    """MiniOneRec's penalty of a wrong beam at each rank 0..G-1 of a group of G."""
    if group_size < 1:
        raise DeepInterestError(f"group size must be at least 1, got {group_size}")
    discounts = [1.0 / math.log2(i + 2) for i in range(group_size)]
    total = sum(discounts)
    return [-d / total for d in discounts]


def _prompt_key(prompt: Any) -> Hashable:
    """A hashable stand-in for a prompt (a chat prompt is a list of dicts)."""
    try:
        hash(prompt)
        return prompt
    except TypeError:
        return repr(prompt)


class RankReward(SIDReward):
    """Exact hit plus MiniOneRec's rank penalty on a group's wrong beams (module docstring)."""

    default_name = "rank"

    def __init__(self, *, catalog: SIDCatalog | str | Path, group_size: int | None = None,
                 hit_reward: float = 1.0, name: str | None = None):
        super().__init__(catalog=catalog, name=name)
        if group_size is not None and group_size < 1:
            raise DeepInterestError(f"rank reward: group_size must be at least 1, got "
                                    f"{group_size}")
        self.group_size = group_size
        self.hit_reward = float(hit_reward)

    def groups(self, prompts: Sequence[Any] | None, n: int) -> list[list[int]]:
        """Row indices of each group, in order (see the module docstring)."""
        if self.group_size is not None:
            if n % self.group_size:
                raise DeepInterestError(
                    f"rank reward: {n} completions do not split into groups of {self.group_size}; "
                    "keep the per-call batch a multiple of the group size")
            return [list(range(s, s + self.group_size)) for s in range(0, n, self.group_size)]
        if prompts is None or len(prompts) != n:
            raise DeepInterestError("rank reward: without group_size, groups come from the "
                                    "prompts, which must be given, one per completion")
        found: dict[Hashable, list[int]] = {}
        for row, prompt in enumerate(prompts):
            found.setdefault(_prompt_key(prompt), []).append(row)
        return list(found.values())

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any],
                 **columns: Any) -> list[float | None]:
        n = len(completions)
        targets = self.targets(columns, n)
        ranks = column(columns, "rank", n, reward=self.__name__, required=False)
        hits = [t is not None and c == self.index.sids[t]
                for c, t in zip(self.codes(completions), targets)]
        out: list[float | None] = [None] * n
        for group in self.groups(prompts, n):
            size = self.group_size or len(group)
            penalties = rank_penalties(size)
            scored = any(hits[r] for r in group)
            for position, row in enumerate(group):
                if targets[row] is None:
                    continue
                if hits[row]:
                    out[row] = self.hit_reward
                elif scored:
                    out[row] = penalties[self._rank(ranks, row, position, size)]
                else:
                    out[row] = 0.0
        return out

    def _rank(self, ranks: list[Any] | None, row: int, position: int, size: int) -> int:
        if ranks is None:
            return position
        rank = ranks[row]
        if hasattr(rank, "item"):
            rank = rank.item()
        if not isinstance(rank, int) or isinstance(rank, bool) or not 0 <= rank < size:
            raise DeepInterestError(f"rank reward: row {row}: rank {rank!r} is not a 0-based "
                                    f"rank within a group of {size}")
        return rank
