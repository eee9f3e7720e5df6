"""GRPO's rollouts: G valid completions per history, their rewards and their log-probs.

:mod:`.grpo` owns the objective and the training loop; this module owns what
it is fed.

- **Generation** (:func:`rollout`). ``beam``: the G beams of one
  trie-constrained beam search (:func:`~..backbones.decoding.constrained_beam_search`
  with ``beam = topk = G``), as MiniOneRec draws its groups: distinct items,
  ranked by score, deterministic. ``sample``: G independent trie-constrained
  samples at a temperature through the same decode protocol (``start``,
  ``expand``, ``step``), drawn from torch's global generator so the training
  loop's saved RNG states make a resumed run draw the same samples; the
  samples may repeat, and their ``rank`` is their order by sequence
  log-probability. Either way every completion is a catalogue item, so it can
  be teacher-forced as a target.
- **Rewards** (:func:`build_reward`, :func:`score`). The config's list of
  ``{name, weight, options}`` becomes one :class:`~..rewards.CompositeReward`
  built through the registry, with the catalogue, the interests and the group
  size handed to the rewards that take them. A completion is passed as its
  codes (what the rule rewards parse), with TRL's columns ``target`` (item
  index), ``rank`` (0-based position in the group) and ``user`` (user id), one
  value per completion; ``None`` counts as 0 (the composite's rule).
- **Log-probs** (:func:`completion_logprobs`): per-token log-probs
  ``[B, G, P]`` of the completions by teacher forcing, from the backbone's
  ``token_logprobs`` (fp32 log-softmax over the full vocabulary, the quantity
  constrained decoding ranks by). A backbone with ``grouped_logprobs`` takes
  the ``[B, G]`` items at once and reads each history once (the T5 encodes it
  once); any other gets the batch repeated G times.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import torch

from .. import registry
from ..backbones.base import HistoryBatch, SIDCatalog
from ..backbones.decoding import constrained_beam_search
from ..backbones.trie import SIDTrie
from ..config import RewardSpec
from ..errors import DeepInterestError
from ..rewards.composite import CompositeReward
from ..rewards.interest_index import InterestIndex


class Rollout(NamedTuple):
    """G completions per history."""

    items: torch.Tensor  # int64 [B, G] catalogue indices
    ranks: torch.Tensor  # int64 [B, G] 0-based rank within the group (beam order, or by score)
    scores: torch.Tensor  # float32 [B, G] summed log-probs the completions were chosen by


class Scored(NamedTuple):
    """Rewards of a rollout and what to log about them."""

    rewards: torch.Tensor  # float32 [B, G]
    components: dict[str, float]  # mean of each reward term (nested terms as "a/b")


# -- generation ----------------------------------------------------------------

def rollout(backbone, batch: HistoryBatch, trie: SIDTrie, *, group: int, generation: str,
            temperature: float = 1.0) -> Rollout:
    """G completions per history of ``batch``, every one a catalogue item (module docstring)."""
    if generation == "beam":
        if group > trie.num_items:
            raise DeepInterestError(f"group_size {group} exceeds the {trie.num_items} items of "
                                    "the catalogue; beam search needs that many distinct "
                                    "completions (generation = 'sample' draws with repeats)")
        found = constrained_beam_search(backbone, batch, trie, beam=group, topk=group)
        ranks = torch.arange(group, device=found.items.device).expand(batch.size, group)
        # clone(): inference-mode tensors cannot be saved for a later backward
        return Rollout(found.items.clone(), ranks.clone(), found.scores.clone())
    if generation == "sample":
        return sample_rollout(backbone, batch, trie, group=group, temperature=temperature)
    raise DeepInterestError(f"generation {generation!r}: use 'beam' or 'sample'")


@torch.no_grad()
def sample_rollout(backbone, batch: HistoryBatch, trie: SIDTrie, *, group: int,
                   temperature: float = 1.0) -> Rollout:
    """G trie-constrained samples per history: at each SID position, a code drawn from
    softmax(log-probs / temperature) over the codes the trie allows after the prefix."""
    catalog = backbone.catalog
    device = batch.items.device
    trie, offsets = trie.to(device), catalog.offsets.to(device)
    rows = batch.size * group
    state = backbone.expand(backbone.start(batch), group)  # row r -> history r // group
    nodes = torch.zeros(rows, dtype=torch.long, device=device)
    codes = torch.zeros((rows, 0), dtype=torch.long, device=device)
    scores = torch.zeros(rows, device=device)
    for p in range(trie.positions):
        logp = backbone.step(state, codes + offsets[:p])
        start = int(offsets[p])
        level = logp[:, start:start + trie.sizes[p]].float()
        level = level.masked_fill(~trie.allowed_mask(p, nodes), float("-inf"))
        code = torch.multinomial(torch.softmax(level / temperature, dim=-1), 1).squeeze(1)
        scores += level.gather(1, code.unsqueeze(1)).squeeze(1)
        nodes = trie.advance(p, nodes, code)
        codes = torch.cat([codes, code.unsqueeze(1)], dim=1)
    scores = scores.view(batch.size, group)
    order = torch.sort(scores, dim=1, descending=True, stable=True).indices
    ranks = torch.argsort(order, dim=1, stable=True)
    return Rollout(trie.item_of(nodes).view(batch.size, group), ranks, scores)


# -- log-probs -----------------------------------------------------------------

def completion_logprobs(backbone, batch: HistoryBatch, items: torch.Tensor) -> torch.Tensor:
    """Per-token log-probs [B, G, P] of completions ``items`` [B, G] (teacher forcing)."""
    if not hasattr(backbone, "token_logprobs"):
        raise DeepInterestError(f"{type(backbone).__name__} has no token_logprobs(batch, "
                                "targets); GRPO needs the log-probs of given completions")
    if getattr(backbone, "grouped_logprobs", False):
        return backbone.token_logprobs(batch, items)
    group = items.shape[1]
    repeated = HistoryBatch(batch.items.repeat_interleave(group, 0),
                            batch.users.repeat_interleave(group, 0))
    return backbone.token_logprobs(repeated, items.reshape(-1)).view(*items.shape, -1)


# -- rewards -------------------------------------------------------------------

def default_rewards(with_interests: bool) -> list[RewardSpec]:
    """The paper's composite with an interests artifact, else exact + MiniOneRec's rank penalty.

    Without interests the paper's quality term has nothing to read, so the
    default falls back to MiniOneRec's "ranking" reward, kept as its two terms
    so both are logged: 1 for a hit, and on a group that has a hit, minus the
    rank's share of the NDCG discounts on each wrong beam.
    """
    if with_interests:
        return [RewardSpec(name="paper")]
    return [RewardSpec(name="exact"), RewardSpec(name="rank", options={"hit_reward": 0.0})]


def build_reward(specs: Sequence[RewardSpec] | None, *, catalog: SIDCatalog,
                 interests: InterestIndex | None, group_size: int) -> CompositeReward:
    """One composite of the configured terms (``None``: :func:`default_rewards`)."""
    specs = list(specs) if specs else default_rewards(interests is not None)
    options: dict[str, dict[str, Any]] = {}
    for spec in specs:
        factory = registry.get("rewards", spec.name)
        if interests is None and registry.requires(factory, "interests"):
            raise DeepInterestError(
                f"reward {spec.name!r} needs an interests artifact; run `di mine` in this run "
                "(or pass interests=...), or choose rewards that need none, e.g. "
                "[{name = 'exact'}, {name = 'prefix', weight = 0.5}]")
        opts = {**spec.options, "reward": spec.name}
        if registry.parameter(factory, "group_size") is not None:
            opts.setdefault("group_size", group_size)  # the rank reward's G
        options[spec.key] = opts
    return CompositeReward(weights={s.key: s.weight for s in specs}, catalog=catalog,
                           interests=interests, options=options, name="grpo")


def as_composite(reward: Callable[..., list]) -> CompositeReward:
    """Any TRL-style reward as a one-term composite (``None`` -> 0, means logged)."""
    if isinstance(reward, CompositeReward):
        return reward
    name = getattr(reward, "__name__", type(reward).__name__)
    return CompositeReward(weights={name: 1.0}, components={name: reward}, name="grpo")


def _component_means(reward: CompositeReward) -> dict[str, float]:
    means = {}
    for key, value in reward.component_means().items():
        if value is not None:
            means[key] = value
        inner = reward.rewards[key]
        if isinstance(inner, CompositeReward):  # e.g. the paper's terms inside "paper"
            means.update({f"{key}/{k}": v for k, v in _component_means(inner).items()})
    return means


def score(reward: CompositeReward, catalog: SIDCatalog, roll: Rollout,
          histories: Sequence[tuple[int, ...]], targets: Sequence[int],
          users: Sequence[str]) -> Scored:
    """Rewards [B, G] of a rollout, one call for the whole batch (groups are contiguous)."""
    batch, group = roll.items.shape
    sids = catalog.sids[roll.items.cpu()].tolist()  # [B, G, P] codes
    completions = [codes for row in sids for codes in row]
    columns = {"target": [t for t in targets for _ in range(group)],
               "rank": roll.ranks.reshape(-1).tolist(),
               "user": [u for u in users for _ in range(group)]}
    prompts = [h for h in histories for _ in range(group)]
    values = reward(prompts=prompts, completions=completions, **columns)
    rewards = torch.tensor([float(v) for v in values], dtype=torch.float32)
    return Scored(rewards.view(batch, group), _component_means(reward))


__all__ = ["Rollout", "Scored", "as_composite", "build_reward", "completion_logprobs",
           "default_rewards", "rollout", "sample_rollout", "score"]
