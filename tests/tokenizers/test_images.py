"""The image slot: a ridge map from image vectors into the text space, fused before
quantization, saved for cold start; text-only SIDs keep their fingerprint."""

import json
import shutil

import numpy as np
import pytest

from deepinterest.config import DataConfig, TokenizeConfig
from deepinterest.data.prepare import prepare_dataset
from deepinterest.data.synthetic import SyntheticConfig
from deepinterest.tokenizers import images as image_slot
from deepinterest.tokenizers.interests import stage_config
from deepinterest.tokenizers.stage import ItemTokenizer, tokenize_items


def test_the_ridge_map_recovers_a_linear_relation():
    rng = np.random.default_rng(0)
    x, a = rng.normal(size=(200, 6)), rng.normal(size=(6, 4))
    w = image_slot.fit_image_map(x, x @ a, ridge=1e-6)
    np.testing.assert_allclose(w, a, atol=1e-4)
    assert image_slot.map_relative_error(x, x @ a, w) < 1e-8
    shrunk = image_slot.fit_image_map(x, x @ a, ridge=1e4)  # a large penalty pulls W to 0
    assert np.abs(shrunk).sum() < 0.2 * np.abs(a).sum()


def test_fusion_mixes_only_the_rows_with_images():
    text = np.eye(3, 4, dtype=np.float32)             # three unit text vectors
    image, w = np.array([[2.0, 0.0]]), np.array([[0.0, 0.0, 0.0, 1.0], [0.0] * 4])
    out = image_slot.fuse_images(text, [1], image, w, weight=0.25)
    np.testing.assert_array_equal(out[[0, 2]], text[[0, 2]])
    # row 1: normalize(0.75 * e1 + 0.25 * e3)
    np.testing.assert_allclose(out[1], np.array([0, 0.75, 0, 0.25]) / np.hypot(0.75, 0.25),
                               rtol=1e-6)


class FakeImages:
    """8-dim image vectors that depend on the picture's number only (img/<n>.jpg)."""

    identity = "fake-images"

    def encode(self, paths):
        rng = np.random.default_rng(7)
        table = rng.normal(size=(100, 8)).astype(np.float32)
        return table[[int(str(p).split("/")[1].split(".")[0]) for p in paths]]


@pytest.fixture(scope="module")
def pictured(tmp_path_factory):
    """A small dataset artifact whose even-numbered items have an image."""
    root = tmp_path_factory.mktemp("images")
    cfg = DataConfig(synthetic=SyntheticConfig(n_items=40, n_users=50, n_motivations=4, seed=0))
    plain = prepare_dataset(cfg, root / "plain").path
    folder = root / "pictured"
    shutil.copytree(plain, folder)
    rows = [json.loads(line) for line in (folder / "items.jsonl").read_text().splitlines()]
    for n, row in enumerate(rows):
        row["images"] = [f"img/{n}.jpg"] if n % 2 == 0 else []
    (folder / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root, folder


def _tokenize(root, dataset, name, **options):
    cfg = TokenizeConfig(levels=2, codebook_size=4, cache_dir=root / "cache", **options)
    return tokenize_items(cfg, dataset, root / name, progress=False).path


def test_the_stage_fuses_images_and_cold_start_places_items_as_fitted(pictured, monkeypatch):
    monkeypatch.setattr(image_slot, "build_image_encoder", lambda name: FakeImages())
    root, dataset = pictured
    text_only = np.load(_tokenize(root, dataset, "text") / "embeddings.npy")
    sids = _tokenize(root, dataset, "fused", image_weight=0.4)
    fused = np.load(sids / "embeddings.npy")
    np.testing.assert_array_equal(fused[1::2], text_only[1::2])    # no image: unchanged
    assert not np.allclose(fused[0::2], text_only[0::2])
    np.testing.assert_allclose(np.linalg.norm(fused, axis=1), 1.0, rtol=1e-5)
    stats = json.loads((sids / "stats.json").read_text())["images"]
    assert stats["items_with_images"] == 20 and 0.0 < stats["map_relative_error"] < 1.0
    assert (sids / "image_map.npy").is_file()

    from deepinterest.data.model import load_dataset

    items = load_dataset(dataset).items[:6]
    fitted = [json.loads(line)["sid"][:-1] for line in
              (sids / "sids.jsonl").read_text().splitlines()[:6]]
    again = ItemTokenizer(sids).encode_items(items)[:, :-1].tolist()
    assert again == fitted  # the saved map embeds each item exactly as the fit did


def test_weight_without_images_warns_and_text_only_keeps_its_fingerprint(pictured, tmp_path):
    root, _ = pictured
    plain = root / "plain"
    sids = _tokenize(tmp_path, plain, "s", image_weight=0.4)
    assert "no item has an image" in " ".join(json.loads((sids / "stats.json").read_text())
                                              ["warnings"])
    assert not (sids / "image_map.npy").exists()
    assert not set(image_slot.IMAGE_FIELDS) & set(stage_config(TokenizeConfig()))
    assert set(image_slot.IMAGE_FIELDS) <= set(stage_config(TokenizeConfig(image_weight=0.2)))
