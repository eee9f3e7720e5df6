"""Composite reward: a weighted sum of named rewards, each component's values kept for logging.

DeepInterestGR's reward (arXiv 2602.18907, later version) is a sum of rule
terms and a quality bonus::

    r = 1[exact] + l_valid * 1[valid SID] + l_pref * LCP / levels + 0.5 * q * 1[exact]

:meth:`CompositeReward.paper` builds exactly that from the registered
``exact``, ``valid``, ``prefix`` and ``quality`` rewards (``quality`` carries
the 0.5 as its ``alpha``, so its weight is 1). The paper version we follow
does not state l_valid and l_pref; the defaults here (0.1 and 0.5) are ours:
a valid SID is worth a little, and a miss that shares every quantizer level
with the target (0.1 + 0.5) still earns less than a hit (at least 1.6). An
optional ``interest`` term adds the interest-aware partial credit of
:mod:`.interest`.

Why one composite rather than several TRL reward functions: TRL also sums
``reward_funcs`` with ``reward_weights``, and that works with these rewards
too; the composite exists so a trainer that takes one reward (or a config
that names one) gets the paper's sum, and so ``None`` is handled the
paper's way: a component that is not applicable to a row counts as 0 (TRL
leaves the row out of that function instead).

Each call keeps every component's raw values in ``last_components`` (name ->
list, ``None`` kept), and :meth:`CompositeReward.component_means` gives their
means over applicable rows, for a trainer to log next to the total.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .. import registry
from ..schemas.sids import SIDCatalog
from ..errors import DeepInterestError
from .base import load_catalog
from .interest_index import InterestIndex

RewardFn = Callable[..., list]


class CompositeReward:
    """sum_k weights[k] * component_k(...), ``None`` counted as 0.

    ``weights`` maps a component name to its weight. A name found in
    ``components`` (an already built reward, any TRL-style callable) is used
    as given; any other is built through the registry as
    ``registry.create("rewards", name, **options[name])``, with ``catalog``
    and ``interests`` passed to the rewards that name them
    (:func:`~deepinterest.registry.create_with`). ``options[name]``
    may name the registered reward under another key (``{"reward":
    "interest", "reference": "target"}``), so one reward can appear twice
    with different options.
    """

    def __init__(self, *, weights: Mapping[str, float],
                 catalog: SIDCatalog | str | Path | None = None,
                 interests: InterestIndex | str | Path | None = None,
                 components: Mapping[str, RewardFn] | None = None,
                 options: Mapping[str, Mapping[str, Any]] | None = None,
                 name: str | None = None):
        if not weights:
            raise DeepInterestError("composite reward: weights is empty; name at least one "
                                    "component, e.g. {'exact': 1.0}")
        for key, w in weights.items():
            if not isinstance(w, (int, float)) or not math.isfinite(w):
                raise DeepInterestError(f"composite reward: weight of {key!r} is {w!r}, not a "
                                        "finite number")
        self.weights = {str(k): float(w) for k, w in weights.items()}
        self.__name__ = name or "composite"
        catalog = load_catalog(catalog) if catalog is not None else None
        if interests is not None and not isinstance(interests, InterestIndex):
            if catalog is None:
                raise DeepInterestError("composite reward: interests given as a folder need "
                                        "the catalog too")
            interests = InterestIndex.from_artifact(interests, catalog)
        given, options = dict(components or {}), dict(options or {})
        unknown = sorted((set(given) | set(options)) - set(self.weights))
        if unknown:
            raise DeepInterestError(f"composite reward: component(s) "
                                    f"{', '.join(map(repr, unknown))} have no weight; add them "
                                    "to weights")
        self.rewards: dict[str, RewardFn] = {
            key: given[key] if key in given else self._build(key, catalog, interests,
                                                             options.get(key, {}))
            for key in self.weights}
        self.last_components: dict[str, list[float | None]] = {}

    @staticmethod
    def _build(key: str, catalog: SIDCatalog | None, interests: InterestIndex | None,
               options: Mapping[str, Any]) -> RewardFn:
        options = dict(options)
        kind = options.pop("reward", key)
        return registry.create_with("rewards", kind, {"catalog": catalog, "interests": interests,
                                                      "name": key}, **options)

    @classmethod
    def paper(cls, *, catalog: SIDCatalog | str | Path, interests: InterestIndex | str | Path,
              valid_weight: float = 0.1, prefix_weight: float = 0.5, quality_alpha: float = 0.5,
              interest_weight: float = 0.0, interest_options: Mapping[str, Any] | None = None,
              name: str = "deepinterest") -> CompositeReward:
        """DeepInterestGR's r = 1[exact] + l_valid 1[valid] + l_pref LCP/levels + 0.5 q 1[exact],
        plus ``interest_weight`` x the interest-aware reward when that weight is not 0."""
        weights = {"exact": 1.0, "valid": valid_weight, "prefix": prefix_weight, "quality": 1.0}
        options: dict[str, Mapping[str, Any]] = {"quality": {"alpha": quality_alpha}}
        if interest_weight:
            weights["interest"] = interest_weight
            options["interest"] = dict(interest_options or {})
        return cls(weights=weights, catalog=catalog, interests=interests, options=options,
                   name=name)

    def __repr__(self) -> str:
        terms = " + ".join(f"{w:g}*{k}" for k, w in self.weights.items())
        return f"CompositeReward({self.__name__}: {terms})"

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "last_components": {}}

    def components(self, prompts: Sequence[Any], completions: Sequence[Any],
                   **columns: Any) -> dict[str, list[float | None]]:
        """Every component's values for these completions (``None`` where not applicable)."""
        out = {}
        for key, reward in self.rewards.items():
            values = list(reward(prompts=prompts, completions=completions, **columns))
            if len(values) != len(completions):
                raise DeepInterestError(f"composite reward: component {key!r} returned "
                                        f"{len(values)} values for {len(completions)} completions")
            out[key] = values
        return out

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any],
                 **columns: Any) -> list[float | None]:
        parts = self.components(prompts, completions, **columns)
        self.last_components = parts
        return [sum(self.weights[k] * (parts[k][row] or 0.0) for k in parts)
                for row in range(len(completions))]

    def component_means(self) -> dict[str, float | None]:
        """Mean of each component over the rows it applied to in the last call (``None``: none)."""
        means: dict[str, float | None] = {}
        for key, values in self.last_components.items():
            kept = [v for v in values if v is not None]
            means[key] = sum(kept) / len(kept) if kept else None
        return means
