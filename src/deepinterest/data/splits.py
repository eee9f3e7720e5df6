"""Leave-one-out splits (the evaluation protocol of docs/data.md; TIGER, LC-Rec).

For a user with items ``s[0..n-1]`` (oldest first):

- test: history ``s[:n-1]``, target ``s[n-1]``;
- validation: history ``s[:n-2]``, target ``s[n-2]``;
- training: every earlier prefix, history ``s[:t]``, target ``s[t]`` for
  ``1 <= t <= n-3``.

Histories keep only the ``max_history`` most recent items (default 20).
Users with fewer than 3 items cannot give a validation and a test example;
they contribute training examples only and are counted in ``Splits.skipped``.
"""

from __future__ import annotations

from dataclasses import dataclass

from .model import Dataset


@dataclass(frozen=True)
class Example:
    user: int  # position in Dataset.users
    history: tuple[int, ...]  # item positions, oldest first, at most max_history
    target: int


@dataclass(frozen=True)
class Splits:
    train: list[Example]
    valid: list[Example]
    test: list[Example]
    max_history: int
    skipped: int  # users too short for validation/test


def _example(user: int, seq: tuple[int, ...], t: int, max_history: int) -> Example:
    return Example(user, seq[max(0, t - max_history):t], seq[t])


DEFAULT_MAX_HISTORY = 20  # the protocol's history length (TIGER, LC-Rec)


def leave_one_out(dataset: Dataset, *, max_history: int = DEFAULT_MAX_HISTORY) -> Splits:
    if max_history < 1:
        raise ValueError(f"max_history must be >= 1, got {max_history}")
    train, valid, test, skipped = [], [], [], 0
    for u, user in enumerate(dataset.users):
        seq, n = user.items, len(user.items)
        if n < 3:
            skipped += 1
            train += [_example(u, seq, t, max_history) for t in range(1, n)]
            continue
        train += [_example(u, seq, t, max_history) for t in range(1, n - 2)]
        valid.append(_example(u, seq, n - 2, max_history))
        test.append(_example(u, seq, n - 1, max_history))
    return Splits(train, valid, test, max_history, skipped)
