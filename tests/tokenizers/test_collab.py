"""The collaborative slot: learned from training interactions only, fused by concatenation."""

import json
from dataclasses import replace

import numpy as np
import pytest

from deepinterest.artifacts import write_manifest
from deepinterest.config import TokenizeConfig
from deepinterest.data.model import Dataset, Item, User, load_dataset, save_dataset
from deepinterest.errors import DeepInterestError
from deepinterest.data.cooccurrence import cooccurrence, training_sequences
from deepinterest.tokenizers.collab import collab_vectors, fuse_collab
from deepinterest.tokenizers.stage import ItemTokenizer, tokenize_items


def _dataset() -> Dataset:
    """Two shopping circles (items 0-9 and 10-19) that users never cross."""
    rng = np.random.default_rng(0)
    users = []
    for u in range(60):
        circle = (u % 2) * 10
        seq = tuple(int(circle + i) for i in rng.permutation(10)[:6])
        users.append(User(f"u{u}", seq))
    items = [Item(f"i{n}", {"title": f"thing number {n}"}) for n in range(20)]
    return Dataset("circles", items, users)


def test_pairs_are_counted_within_the_window_with_weight_one_over_distance():
    counts = cooccurrence([(0, 1, 2, 3)], 4, window=2).toarray()
    assert counts[0, 1] == counts[1, 0] == 1.0 and counts[0, 2] == 0.5
    assert counts[0, 3] == 0.0 and np.allclose(counts, counts.T)


def test_training_sequences_drop_each_users_two_held_out_items():
    dataset = _dataset()
    assert training_sequences(dataset)[0] == dataset.users[0].items[:-2]


def test_items_of_one_circle_are_closer_to_each_other_than_to_the_other():
    vectors = collab_vectors(_dataset(), dim=4, window=3)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    sims = vectors @ vectors.T
    same = np.mean([sims[a, b] for a in range(10) for b in range(10) if a != b])
    across = np.mean([sims[a, b] for a in range(10) for b in range(10, 20)])
    assert same > across + 0.5


def test_fusion_keeps_the_shares_of_squared_norm():
    text = np.eye(3, dtype=np.float32)
    collab = np.full((3, 2), np.sqrt(0.5), dtype=np.float32)
    fused = fuse_collab(text, collab, 0.25)
    assert fused.shape == (3, 5)
    assert np.allclose((fused[:, :3] ** 2).sum(1), 0.75)
    assert np.allclose((fused[:, 3:] ** 2).sum(1), 0.25)
    with pytest.raises(DeepInterestError):
        fuse_collab(text, collab, 1.0)


def _tokenize(dataset: Dataset, root, name: str):
    folder = root / f"{name}-dataset"
    folder.mkdir()
    save_dataset(dataset, folder)
    write_manifest(folder, stage="data", config={}, inputs={}, counts={}, seconds=0.0)
    cfg = TokenizeConfig(collab_weight=0.5, collab_dim=4, levels=2, codebook_size=4,
                         cache_dir=root / "cache")
    result = tokenize_items(cfg, folder, root / f"{name}-sids", progress=False)
    return [json.loads(line)["sid"] for line in (result.path / "sids.jsonl").open()]


def test_changing_users_held_out_items_leaves_the_sids_unchanged(tmp_path):
    dataset = _dataset()
    # Every user's validation and test targets moved to the other circle: a leak would
    # pull those items towards it.
    moved = [replace(u, items=u.items[:-2] + tuple((i + 10) % 20 for i in u.items[-2:]))
             for u in dataset.users]
    before = _tokenize(dataset, tmp_path, "a")
    after = _tokenize(replace(dataset, users=moved), tmp_path, "b")
    assert before == after
    changed = [replace(u, items=((u.items[0] + 10) % 20,) + u.items[1:]) for u in dataset.users]
    # ... while training items do move them: the slot is not a constant.
    assert _tokenize(replace(dataset, users=changed), tmp_path, "c") != before


def test_cold_start_items_get_a_zero_collaborative_part(tmp_path):
    _tokenize(_dataset(), tmp_path, "a")
    tokenizer = ItemTokenizer(tmp_path / "a-sids")
    assert tokenizer.spec["collab"] == {"weight": 0.5, "dim": 4}
    assert np.load(tmp_path / "a-sids" / "embeddings.npy").shape[1] == 384 + 4
    sids = tokenizer.encode_items([Item("new", {"title": "thing number 3"})])
    assert sids.shape == (1, 3)
    assert load_dataset(tmp_path / "a-dataset").name == "circles"
