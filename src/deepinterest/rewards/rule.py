"""Rule rewards: exact hit, valid SID, prefix match.

The rule terms of the DeepInterestGR reward (arXiv 2602.18907, later
version)::

    r = 1[exact] + l_valid * 1[valid SID] + l_pref * LCP / levels + 0.5 * q * 1[exact]

- ``exact`` (:class:`ExactReward`): 1.0 when the completion's full SID,
  suffix included, equals the target's, else 0.0. Comparing codes rather
  than items is the same thing: SIDs are unique within a catalogue.
- ``valid`` (:class:`ValidReward`): 1.0 when the completion is the SID of
  some catalogue item, else 0.0. It needs no target. Under trie-constrained
  decoding every completion is valid, so this term matters for unconstrained
  sampling (TRL's own generate path), where it pays for learning the
  catalogue.
- ``prefix`` (:class:`PrefixReward`): the longest common prefix with the
  target over the quantizer levels only, divided by the number of levels,
  in [0, 1]. The collision suffix is left out (the paper's "not counted in
  prefix rewards"): it tells colliding items apart but says nothing about
  similarity, so two items that differ only in their suffix share every
  level and score 1.0. Items that share a prefix share interests
  (interest-enhanced discretization), which is what makes this partial
  credit meaningful. It is computed for any readable SID, valid or not.

A completion that cannot be read as a SID (:func:`.base.as_codes` gives
``None``) earns 0.0 from all three; a row whose ``target`` is ``None`` gets
``None`` from ``exact`` and ``prefix`` (nothing to compare with).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .base import Codes, SIDReward


def common_prefix(a: Codes, b: Codes, levels: int) -> int:
    """How many of the first ``levels`` codes ``a`` and ``b`` share before they differ."""
    n = 0
    while n < levels and a[n] == b[n]:
        n += 1
    return n


class ExactReward(SIDReward):
    """1.0 when the completion is exactly the target's SID (suffix included), else 0.0."""

    default_name = "exact"

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any],
                 **columns: Any) -> list[float | None]:
        targets = self.targets(columns, len(completions))
        return [None if t is None else float(c == self.index.sids[t])
                for c, t in zip(self.codes(completions), targets)]


class ValidReward(SIDReward):
    """1.0 when the completion is the SID of a catalogue item, else 0.0 (no target needed)."""

    default_name = "valid"

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any],
                 **columns: Any) -> list[float | None]:
        return [float(c is not None and c in self.index.item_of)
                for c in self.codes(completions)]


class PrefixReward(SIDReward):
    """Longest common prefix with the target over the quantizer levels / levels, in [0, 1]."""

    default_name = "prefix"

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any],
                 **columns: Any) -> list[float | None]:
        levels = self.index.levels
        targets = self.targets(columns, len(completions))
        out: list[float | None] = []
        for codes, t in zip(self.codes(completions), targets):
            if t is None:
                out.append(None)
            elif codes is None:
                out.append(0.0)
            else:
                out.append(common_prefix(codes, self.index.sids[t], levels) / levels)
        return out
