"""Collisions between items' code tuples: statistics, the suffix code, balanced assignment.

    stats = collision_stats(codes)                  # how many items share a full tuple
    result = add_suffix(codes)                      # result.sids: unique [N, levels + 1]
    q = quantizer.quantize(vectors)
    balanced = balanced_last_level(q.last_input, quantizer.codebooks[-1], q.codes)

Design decisions:

- The suffix rule. DeepInterestGR (arXiv 2602.18907) appends a suffix
  token only where all three codes collide; here every item gets a suffix
  code so all SIDs have the same length: items are numbered 0, 1, 2, ... in
  item order within each group of identical tuples, so an item whose tuple
  is unique gets 0, and so does the first item of a colliding group.
  Suffix 0 plays the role of "no suffix" in the paper; only later members
  of a colliding group get a non-zero one.
  Example: codes [[1,2,3],[1,2,3],[0,0,0],[1,2,3]] -> suffixes [0,1,0,2],
  collision rate 3/4 (items whose tuple is shared with at least one other).
  Prefix rewards ignore the suffix (paper), which the reward code handles.
- ``balanced_last_level`` cuts collisions at the source, in the spirit of
  LC-Rec's uniform semantic mapping, but only where it is needed: in each
  colliding group the first item (the one whose suffix would be 0) keeps its
  codes; every later member ("mover") is re-assigned a last-level code that
  no other item with the same prefix (first ``levels - 1`` codes) uses. Per
  prefix this is a min-cost assignment with capacity one per code (cost: the
  squared distance of the mover's last-level input to each free codeword),
  solved by a log-domain Sinkhorn on its entropic relaxation (rows: mass 1;
  columns: mass at most 1) and rounded greedily (largest plan entry first,
  each free code taken once). The result is collision-free wherever a prefix
  has no more items than codes, so the last level ends up used near
  uniformly within every prefix instead of piling items onto one code.
- Departure from LC-Rec: LC-Rec's Sinkhorn asks every code for the *same*
  mass and then takes each item's argmax. On a small colliding group that
  constraint flattens the plan (one mover gets an arbitrary code, not its
  nearest free one) and identical inputs, which every per-item argmax maps to
  the same code, never separate, so LC-Rec loops up to 20 rounds and still
  leaves duplicates colliding. Capacity constraints keep the distances and
  split duplicates. Prefixes never change, so the first levels keep their
  meaning; the price is a slightly worse last-level reconstruction for the
  moved items, reported as ``added_error``.
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
        raise DeepInterestError(
            f"codes must be an [N, levels] matrix, got shape {tuple(codes.shape)}"
        )
    return codes.long()


def _groups(codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(group, counts, rank)``: each item's tuple group, group sizes, position in the group."""
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
    current codes (only their last column changes). ``epsilon`` is the
    entropic regularisation in units of the mean last-level squared error
    (smaller is closer to the exact min-cost assignment); ``iterations`` Sinkhorn iterations.
    """
    codes = _as_code_matrix(codes).clone()
    before = collision_stats(codes).collision_rate
    movers = (_groups(codes)[2] > 0).nonzero().squeeze(1)
    if movers.numel() == 0:
        return BalancedResult(codes, 0, before, before, 0.0)
    last_input = last_input.to(torch.float32)
    codebook = codebook.to(last_input.device, torch.float32)
    cost = torch.cdist(last_input[movers], codebook).square()
    # Temperature unit: the mean last-level squared error of the catalogue.
    scale = float((last_input - codebook[codes[:, -1]]).square().sum(dim=1).mean())
    # With one level every item shares the empty prefix.
    prefix = _groups(codes[:, :-1])[0] if codes.shape[1] > 1 else torch.zeros_like(codes[:, 0])
    new_last = _assign_movers(
        cost, prefix, codes[:, -1], movers, codebook.shape[0], epsilon * scale, iterations
    )
    moved = new_last != codes[movers, -1]
    added = 0.0
    if moved.any():
        increase = cost.gather(1, new_last[:, None]) - cost.gather(1, codes[movers, -1:])
        added = float(increase[moved].mean())
    codes[movers, -1] = new_last
    after = collision_stats(codes).collision_rate
    return BalancedResult(codes, int(moved.sum()), before, after, added)


def _assign_movers(
    cost: torch.Tensor, prefix: torch.Tensor, last: torch.Tensor, movers: torch.Tensor,
    k: int, temperature: float, iterations: int,
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
        rows = min(step, mover_prefixes.numel() - begin)
        block = torch.full((rows, width, k), float("inf"), device=cost.device)
        block[local[chunk] - begin, slot[chunk]] = cost[chunk]
        allowed = torch.isfinite(block) & free[begin : begin + block.shape[0]].unsqueeze(1)
        assigned = _round_greedy(_sinkhorn(block, allowed, temperature, iterations), allowed)
        picked = assigned[local[chunk] - begin, slot[chunk]]
        new_last[chunk] = torch.where(picked >= 0, picked, new_last[chunk])
    return new_last


def _free_codes(
    prefix: torch.Tensor,
    last: torch.Tensor,
    stays: torch.Tensor,
    mover_prefixes: torch.Tensor,
    k: int,
) -> torch.Tensor:
    """[P, K] mask of last codes not used by staying items of each mover prefix."""
    lookup = torch.full((int(prefix.max()) + 1,), -1, dtype=torch.long, device=prefix.device)
    lookup[mover_prefixes] = torch.arange(mover_prefixes.numel(), device=prefix.device)
    row = lookup[prefix[stays]]
    taken = torch.zeros(mover_prefixes.numel(), k, dtype=torch.bool, device=prefix.device)
    keep = row >= 0
    taken[row[keep], last[stays][keep]] = True
    return ~taken


def _sinkhorn(
    cost: torch.Tensor, allowed: torch.Tensor, temperature: float, iterations: int
) -> torch.Tensor:
    """Log transport plan [P, M, K]: each mover row mass 1, each free code at most mass 1."""
    rows = allowed.any(dim=2)
    cols = allowed.any(dim=1)
    logits = torch.where(allowed, -cost / max(temperature, 1e-12), float("-inf"))
    f = torch.zeros(rows.shape, device=cost.device)
    g = torch.zeros(cols.shape, device=cost.device)
    for _ in range(iterations):
        f = torch.where(rows, -torch.logsumexp(logits + g.unsqueeze(1), dim=2), 0.0)
        # Capacity, not equality: only codes over-subscribed are scaled down.
        excess = torch.logsumexp(logits + f.unsqueeze(2), dim=1)
        g = torch.where(cols, (-excess).clamp_max(0.0), 0.0)
    return logits + f.unsqueeze(2) + g.unsqueeze(1)


def _round_greedy(log_plan: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """Hard assignment [P, M] (-1: none): largest plan entry first, each code once per prefix."""
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
