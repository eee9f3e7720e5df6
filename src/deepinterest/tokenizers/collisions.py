"""Collisions between items' code tuples: statistics, the suffix code, balanced assignment.

    stats = collision_stats(codes)                  # how many items share a full tuple
    result = add_suffix(codes)                      # result.sids: unique [N, levels + 1]
    balanced = balanced_last_level(q.last_input, codebook, q.codes)   # fewer collisions at the source

Design decisions:

- The suffix rule (GUIDE section 4: "a suffix token only where all three
  codes collide"). Every item gets a suffix code so all SIDs have the same
  length: items are numbered 0, 1, 2, ... in item order within each group of
  identical tuples, so an item whose tuple is unique gets 0, and so does the
  first item of a colliding group. Suffix 0 plays the role of "no suffix"
  in the paper; only later members of a colliding group get a non-zero one.
  Example: codes [[1,2,3],[1,2,3],[0,0,0],[1,2,3]] -> suffixes [0,1,0,2],
  collision rate 3/4 (items whose tuple is shared with at least one other).
  Prefix rewards ignore the suffix (paper), which the reward code handles.
- ``balanced_last_level`` is LC-Rec's uniform semantic mapping, applied only
  where it is needed: in each colliding group the first item (the one whose
  suffix would be 0) keeps its codes; every later member is re-assigned a
  different last-level code among those that no other item with the same
  prefix (first ``levels - 1`` codes) uses. Within each prefix, a log-domain
  Sinkhorn solves the entropic transport between those movers (mass 1 each)
  and the free codes (uniform mass, the near-uniform constraint) with cost
  the squared distance of the item's last-level input to each codeword; the
  plan is then rounded greedily (largest plan entry first, each free code
  taken at most once), so the result is collision-free wherever a prefix
  has no more items than codes. Identical inputs (exact duplicates, which no
  per-item argmax can separate) still get distinct codes. Prefixes are never
  changed, so the first levels keep their meaning; the price is a slightly
  worse last-level reconstruction for the moved items, reported as
  ``added_error``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import DeepInterestError

# Floats per [prefixes, movers, K] block in balanced_last_level (64 MB).
BLOCK_ELEMENTS = 1 << 24


@dataclass(frozen=True)
class CollisionStats:
    """Items sharing a full code tuple: ``collision_rate`` = ``colliding_items`` / ``items``."""

    items: int
    unique_tuples: int
    colliding_items: int
    collision_rate: float
    colliding_groups: int
    max_group_size: int


@dataclass(frozen=True)
class SuffixResult:
    """``sids`` [N, levels + 1] (codes then ``suffix``), unique per item; stats before the suffix.

    ``suffix_size`` is the number of distinct suffix codes needed (the largest group).
    """

    sids: torch.Tensor
    suffix: torch.Tensor
    collision_rate_before_suffix: float
    colliding_groups: int
    max_group_size: int
    suffix_size: int


@dataclass(frozen=True)
class BalancedResult:
    """Codes after :func:`balanced_last_level` (same shape, only the last column changed).

    ``moved`` items got a new last code; ``added_error`` is the mean increase
    of their last-level squared error (0.0 when none moved).
    """

    codes: torch.Tensor
    moved: int
    collision_rate_before: float
    collision_rate_after: float
    added_error: float


def _as_code_matrix(codes: torch.Tensor) -> torch.Tensor:
    codes = torch.as_tensor(codes)
    if codes.dim() != 2 or codes.shape[1] == 0:
        raise DeepInterestError(f"codes must be an [N, levels] matrix, got shape {tuple(codes.shape)}")
    return codes.long()


def _groups(codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(group, counts, rank)``: each item's tuple group, group sizes, item's position in its group."""
    _, group, counts = torch.unique(codes, dim=0, return_inverse=True, return_counts=True)
    return group, counts, _rank_within(group, counts)


def _rank_within(group: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """0, 1, 2, ... in item order within each group (stable sort by group)."""
    order = torch.argsort(group, stable=True)
    starts = torch.cumsum(counts, dim=0) - counts
    rank = torch.empty_like(group)
    rank[order] = torch.arange(group.numel(), device=group.device) - starts[group[order]]
    return rank


def collision_stats(codes: torch.Tensor) -> CollisionStats:
    """How many items share their full code tuple with at least one other item."""
    codes = _as_code_matrix(codes)
    n = codes.shape[0]
    if n == 0:
        return CollisionStats(0, 0, 0, 0.0, 0, 0)
    group, counts, _ = _groups(codes)
    colliding = int(counts[group].gt(1).sum())
    return CollisionStats(
        items=n,
        unique_tuples=int(counts.numel()),
        colliding_items=colliding,
        collision_rate=colliding / n,
        colliding_groups=int(counts.gt(1).sum()),
        max_group_size=int(counts.max()),
    )


def add_suffix(codes: torch.Tensor) -> SuffixResult:
    """Append the suffix code (position within the group of identical tuples) to every item."""
    codes = _as_code_matrix(codes)
    stats = collision_stats(codes)
    suffix = _groups(codes)[2] if codes.shape[0] else codes.new_zeros(0)
    return SuffixResult(
        sids=torch.cat([codes, suffix.unsqueeze(1)], dim=1),
        suffix=suffix,
        collision_rate_before_suffix=stats.collision_rate,
        colliding_groups=stats.colliding_groups,
        max_group_size=stats.max_group_size,
        suffix_size=max(stats.max_group_size, 1),
    )


def balanced_last_level(
    last_input: torch.Tensor,
    codebook: torch.Tensor,
    codes: torch.Tensor,
    *,
    epsilon: float = 0.05,
    iterations: int = 50,
) -> BalancedResult:
    """Re-assign the last code of later members of colliding groups (see the module docstring).

    ``last_input`` [N, D] is what the last level quantized (``Quantized.last_input``),
    ``codebook`` [K, D] the last level's codebook, ``codes`` [N, levels] the
    current codes. ``epsilon`` is the entropic regularisation relative to the
    mean cost in each prefix; ``iterations`` Sinkhorn iterations.
    """
    codes = _as_code_matrix(codes).clone()
    before = collision_stats(codes).collision_rate
    movers = (_groups(codes)[2] > 0).nonzero().squeeze(1)
    if movers.numel() == 0:
        return BalancedResult(codes, 0, before, before, 0.0)
    last_input = last_input.to(torch.float32)
    codebook = codebook.to(last_input.device, torch.float32)
    cost = torch.cdist(last_input[movers], codebook).square()
    prefix, prefix_count, _ = _groups(codes[:, :-1]) if codes.shape[1] > 1 else _single_prefix(codes)
    new_last = _assign_movers(cost, prefix, codes[:, -1], movers, codebook.shape[0], epsilon, iterations)
    old_cost = cost.gather(1, codes[movers, -1:]).squeeze(1)
    moved = new_last != codes[movers, -1]
    added = float((cost.gather(1, new_last.unsqueeze(1)).squeeze(1) - old_cost)[moved].mean()) if moved.any() else 0.0
    codes[movers, -1] = new_last
    return BalancedResult(codes, int(moved.sum()), before, collision_stats(codes).collision_rate, added)


def _single_prefix(codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """With one level every item shares the empty prefix."""
    n = codes.shape[0]
    zeros = codes.new_zeros(n)
    return zeros, torch.tensor([n], device=codes.device), zeros


def _assign_movers(
    cost: torch.Tensor, prefix: torch.Tensor, last: torch.Tensor, movers: torch.Tensor,
    k: int, epsilon: float, iterations: int,
) -> torch.Tensor:
    """New last code of each mover: Sinkhorn over free codes of its prefix, greedy rounding."""
    mover_prefixes, local = torch.unique(prefix[movers], return_inverse=True)
    slot = _rank_within(local, torch.bincount(local))
    width = int(slot.max()) + 1
    # Codes held by items that stay put (everyone but the movers) are not free.
    is_mover = torch.zeros_like(prefix, dtype=torch.bool)
    is_mover[movers] = True
    free = _free_codes(prefix, last, ~is_mover, mover_prefixes, k)
    new_last = last[movers].clone()
    step = max(1, BLOCK_ELEMENTS // (width * k))
    for begin in range(0, mover_prefixes.numel(), step):
        chunk = (local >= begin) & (local < begin + step)
        block = torch.full((min(step, mover_prefixes.numel() - begin), width, k), float("inf"), device=cost.device)
        block[local[chunk] - begin, slot[chunk]] = cost[chunk]
        allowed = torch.isfinite(block) & free[begin : begin + block.shape[0]].unsqueeze(1)
        assigned = _round_greedy(_sinkhorn(block, allowed, epsilon, iterations), allowed)
        picked = assigned[local[chunk] - begin, slot[chunk]]
        new_last[chunk] = torch.where(picked >= 0, picked, new_last[chunk])
    return new_last


def _free_codes(
    prefix: torch.Tensor, last: torch.Tensor, stays: torch.Tensor, mover_prefixes: torch.Tensor, k: int
) -> torch.Tensor:
    """[P, K] mask of last codes not used by staying items of each mover prefix."""
    lookup = torch.full((int(prefix.max()) + 1,), -1, dtype=torch.long, device=prefix.device)
    lookup[mover_prefixes] = torch.arange(mover_prefixes.numel(), device=prefix.device)
    row = lookup[prefix[stays]]
    taken = torch.zeros(mover_prefixes.numel(), k, dtype=torch.bool, device=prefix.device)
    keep = row >= 0
    taken[row[keep], last[stays][keep]] = True
    return ~taken


def _sinkhorn(cost: torch.Tensor, allowed: torch.Tensor, epsilon: float, iterations: int) -> torch.Tensor:
    """Log transport plan [P, M, K]: each row mass 1, free codes share the rows' mass equally."""
    rows = allowed.any(dim=2)
    cols = allowed.any(dim=1)
    scale = torch.where(allowed, cost, 0.0).sum(dim=(1, 2)) / allowed.sum(dim=(1, 2)).clamp_min(1)
    logits = torch.where(allowed, -cost / (epsilon * scale.clamp_min(1e-12)).view(-1, 1, 1), float("-inf"))
    col_mass = torch.log(rows.sum(1, keepdim=True) / cols.sum(1, keepdim=True).clamp_min(1))
    f = torch.zeros(rows.shape, device=cost.device)
    g = torch.zeros(cols.shape, device=cost.device)
    for _ in range(iterations):
        f = torch.where(rows, -torch.logsumexp(logits + g.unsqueeze(1), dim=2), 0.0)
        g = torch.where(cols, col_mass - torch.logsumexp(logits + f.unsqueeze(2), dim=1), 0.0)
    return logits + f.unsqueeze(2) + g.unsqueeze(1)


def _round_greedy(log_plan: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """Hard assignment [P, M] (-1 = none): largest plan entry first, each code at most once per prefix."""
    score = torch.where(allowed, log_plan, float("-inf"))
    p, m, k = score.shape
    assigned = torch.full((p, m), -1, dtype=torch.long, device=score.device)
    for _ in range(m):
        best, flat = score.view(p, -1).max(dim=1)
        ok = torch.isfinite(best).nonzero().squeeze(1)
        if ok.numel() == 0:
            break
        row, col = flat[ok] // k, flat[ok] % k
        assigned[ok, row] = col
        score[ok, row, :] = float("-inf")
        score[ok, :, col] = float("-inf")
    return assigned
