"""Reward functions for GRPO on semantic IDs, with TRL's signature.

Each reward is a small picklable callable class with a stable ``__name__``::

    reward(prompts, completions, **columns) -> list[float | None]

so it plugs into ``trl.GRPOTrainer(reward_funcs=[...])`` as is (docs/rewards.md).
One module per family:

| module | rewards (registered names) |
|---|---|
| :mod:`.rule` | ``exact``, ``valid``, ``prefix`` |
| :mod:`.rank` | ``rank`` (MiniOneRec's rank-aware rule) |
| :mod:`.interest` | ``interest`` (overlap with the user's deep interests) |
| :mod:`.quality` | ``quality`` (alpha * q on a hit) |
| :mod:`.composite` | ``composite`` (weighted sum), ``paper`` (DeepInterestGR's sum) |

:mod:`.base` parses completions (:func:`as_codes`) and reads columns;
:mod:`.interest_index` reads the ``interests`` artifact (:class:`InterestIndex`).
"""

from .base import SIDIndex, SIDReward, as_codes
from .composite import CompositeReward
from .interest import InterestReward, interest_overlap
from .interest_index import Interest, InterestIndex
from .quality import QualityReward
from .rank import RankReward, rank_penalties
from .rule import ExactReward, PrefixReward, ValidReward

__all__ = [
    "CompositeReward", "ExactReward", "Interest", "InterestIndex", "InterestReward",
    "PrefixReward", "QualityReward", "RankReward", "SIDIndex", "SIDReward", "ValidReward",
    "as_codes", "interest_overlap", "rank_penalties",
]
