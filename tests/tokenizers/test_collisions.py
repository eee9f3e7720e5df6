"""Suffix codes, collision statistics and the balanced last level (docs/tokenizers.md)."""

import pytest
import torch

from deepinterest.errors import DeepInterestError
from deepinterest.tokenizers.collisions import add_suffix, balanced_last_level, collision_stats
from deepinterest.tokenizers.rkmeans import ResidualKMeans


def test_suffix_hand_worked_example():
    result = add_suffix(torch.tensor([[1, 2, 3], [1, 2, 3], [0, 0, 0], [1, 2, 3]]))
    assert result.suffix.tolist() == [0, 1, 0, 2]
    assert result.sids.tolist() == [[1, 2, 3, 0], [1, 2, 3, 1], [0, 0, 0, 0], [1, 2, 3, 2]]
    assert result.collision_rate_before_suffix == 0.75
    assert (result.colliding_groups, result.max_group_size, result.suffix_size) == (1, 3, 3)


def test_collision_stats_two_groups():
    stats = collision_stats(torch.tensor([[0, 1], [2, 2], [0, 1], [2, 2], [2, 2], [5, 5]]))
    assert (stats.items, stats.unique_tuples, stats.colliding_items) == (6, 3, 5)
    assert stats.collision_rate == pytest.approx(5 / 6)
    assert (stats.colliding_groups, stats.max_group_size) == (2, 3)


def test_no_collisions_means_all_zero_suffixes():
    codes = torch.tensor([[0, 1], [1, 0], [1, 1]])
    result = add_suffix(codes)
    assert result.suffix.tolist() == [0, 0, 0]
    assert result.collision_rate_before_suffix == 0.0 and result.suffix_size == 1


def test_suffix_properties_on_random_codes():
    codes = torch.randint(0, 3, (500, 3), generator=torch.Generator().manual_seed(0))
    result = add_suffix(codes)
    assert len({tuple(r) for r in result.sids.tolist()}) == 500  # unique SIDs
    assert torch.equal(result.sids[:, :3], codes)
    seen: dict[tuple, int] = {}
    for row, suffix in zip(codes.tolist(), result.suffix.tolist()):
        assert suffix == seen.get(tuple(row), 0)  # 0, 1, 2, ... in item order
        seen[tuple(row)] = suffix + 1
    assert result.suffix_size == max(seen.values()) == int(result.suffix.max()) + 1


def test_bad_codes_are_rejected():
    with pytest.raises(DeepInterestError, match="levels"):
        add_suffix(torch.tensor([1, 2, 3]))


def test_balanced_moves_duplicates_to_the_nearest_free_codes():
    codebook = torch.tensor([[0.0], [1.0], [2.0], [10.0]])
    last_input = torch.tensor([[0.1], [0.1], [0.1], [9.0], [0.9]])
    codes = torch.tensor([[0, 0], [0, 0], [0, 0], [0, 3], [1, 0]])
    result = balanced_last_level(last_input, codebook, codes)
    # Item 0 keeps code 0; code 3 belongs to item 3 (same prefix); item 4 has
    # another prefix, so its code 0 does not count as taken.
    assert result.codes.tolist() == [[0, 0], [0, 1], [0, 2], [0, 3], [1, 0]]
    assert result.moved == 2
    assert (result.collision_rate_before, result.collision_rate_after) == (0.6, 0.0)
    assert result.added_error == pytest.approx(((0.81 - 0.01) + (3.61 - 0.01)) / 2, rel=1e-5)


def test_balanced_competing_movers_get_the_cheapest_joint_assignment():
    # Movers A (item 1, on code 1) and B (item 2) both prefer code 1. Greedy by
    # cost gives A code 1 and B code 2 (total 0.16); the min-cost assignment
    # gives B code 1 and A code 2 (total 0.10).
    codebook = torch.tensor([[5.0, 5.0], [0.0, 0.0], [0.3, 0.0], [-5.0, 5.0]])
    last_input = torch.tensor([[5.0, 5.0], [0.0, 0.0], [-0.1, 0.0]])
    result = balanced_last_level(last_input, codebook, torch.zeros(3, 1, dtype=torch.long))
    assert result.codes[:, 0].tolist() == [0, 2, 1]
    assert result.collision_rate_after == 0.0


def test_balanced_leaves_a_full_prefix_colliding():
    codebook = torch.tensor([[0.0], [1.0]])
    codes = torch.zeros(3, 1, dtype=torch.long)
    result = balanced_last_level(torch.zeros(3, 1), codebook, codes)
    assert sorted(result.codes[:2, 0].tolist()) == [0, 1]
    assert result.collision_rate_after == pytest.approx(2 / 3)


def test_balanced_lowers_collisions_of_residual_kmeans_on_clustered_data():
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(6, 8, generator=g)
    # Tight clusters, with exact duplicates among them: many full-tuple collisions.
    x = centres[torch.arange(120) % 6] + 0.02 * torch.randn(120, 8, generator=g)
    x[::12] = x[0]
    rk = ResidualKMeans(codebook_sizes=(16, 32))
    rk.fit(x, seed=0)
    quantized = rk.quantize(x)
    result = balanced_last_level(quantized.last_input, rk.codebooks[-1], quantized.codes)
    before = collision_stats(quantized.codes)
    assert result.collision_rate_before == before.collision_rate > 0.2
    # No prefix holds more than 32 items here, so every collision can be removed.
    assert torch.bincount(add_suffix(quantized.codes[:, :1]).sids[:, 0]).max() <= 32
    assert result.collision_rate_after == 0.0
    assert torch.equal(result.codes[:, 0], quantized.codes[:, 0])  # prefixes untouched
    first_of_group = add_suffix(quantized.codes).suffix == 0
    assert torch.equal(result.codes[first_of_group], quantized.codes[first_of_group])
    assert result.added_error > 0


def test_balanced_without_collisions_changes_nothing():
    codes = torch.tensor([[0, 1], [0, 2]])
    result = balanced_last_level(torch.zeros(2, 3), torch.zeros(4, 3), codes)
    assert torch.equal(result.codes, codes) and result.moved == 0 and result.added_error == 0.0
