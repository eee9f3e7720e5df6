"""Quality-aware reward: a bonus on an exact hit, scaled by the target item's quality.

DeepInterestGR (arXiv 2602.18907, later version) adds ``0.5 * q * 1[exact]``
to its reward, where q is the item's quality from its labelled deep
interests, q = sum_j c_j l_j / sum_j c_j (confidences c_j, reward labels
l_j), as ``di mine`` writes it in ``items.jsonl``. Hitting an item whose
interests are specific and grounded is then worth more than hitting one
whose mined interests were vague. :class:`QualityReward` gives::

    r = alpha * q(target) * 1[exact]        (alpha = 0.5 by default)

so a miss scores 0.0 and the bonus lies in [0, alpha]. ``None`` when the row
has no target or the interests artifact has no quality for the target item
(e.g. it mined only part of the catalogue); a composite counts ``None`` as 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..schemas.sids import SIDCatalog
from .base import SIDReward
from .interest_index import InterestIndex


class QualityReward(SIDReward):
    """``alpha * q(target)`` on an exact hit, else 0 (module docstring)."""

    default_name = "quality"

    def __init__(self, *, catalog: SIDCatalog | str | Path, interests: InterestIndex | str | Path,
                 alpha: float = 0.5, name: str | None = None):
        super().__init__(catalog=catalog, name=name)
        self.interests = (interests if isinstance(interests, InterestIndex)
                          else InterestIndex.from_artifact(interests, self.index.catalog))
        self.alpha = float(alpha)

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any],
                 **columns: Any) -> list[float | None]:
        targets = self.targets(columns, len(completions))
        out: list[float | None] = []
        for codes, t in zip(self.codes(completions), targets):
            q = None if t is None else self.interests.quality.get(t)
            if q is None:
                out.append(None)
            else:
                out.append(self.alpha * q if codes == self.index.sids[t] else 0.0)
        return out
