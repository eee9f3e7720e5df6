"""Micro-benchmarks of the hot paths, with pytest-benchmark (not part of the test run).

    pytest benchmarks/micro --benchmark-json=benchmarks/.cache/micro.json
    python benchmarks/build_results.py --benchmark-json benchmarks/.cache/micro.json

Each group pairs our code with the alternative a user would pick where one
exists, at a size that runs in seconds on a laptop CPU: the nearest-codeword
PyTorch reference against ``torch.cdist`` + argmin (and the Triton kernel on a
CUDA GPU), residual k-means against faiss, one trie-constrained decoding
step, and one training step of the T5 backbone. ``build_results.py`` turns
the JSON into one result record per group, with the ratio of medians.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deepinterest.backbones.base import HistoryBatch, SIDCatalog, pad_histories
from deepinterest.backbones.decoding import constrained_beam_search
from deepinterest.backbones.t5 import T5Backbone
from deepinterest.backbones.trie import SIDTrie
from deepinterest.tokenizers.collisions import add_suffix
from deepinterest.tokenizers.kernels.reference import nearest_codeword_torch
from deepinterest.tokenizers.rkmeans import ResidualKMeans

N, K, D = 20_000, 256, 64
T5_SIZE = dict(d_model=128, encoder_layers=3, decoder_layers=3, heads=4, d_kv=32, d_ff=512)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the same budget for every method; a shared machine stays quiet
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def vectors():
    gen = torch.Generator().manual_seed(0)
    return torch.randn(N, D, generator=gen), torch.randn(K, D, generator=gen)


@pytest.mark.benchmark(group="nearest codeword 20000x256x64")
def test_nearest_reference(benchmark, vectors):
    x, c = vectors
    benchmark(nearest_codeword_torch, x, c)


@pytest.mark.benchmark(group="nearest codeword 20000x256x64")
def test_nearest_cdist_argmin(benchmark, vectors):
    x, c = vectors
    benchmark(lambda: torch.cdist(x, c).argmin(1))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the Triton kernel is timed on CUDA")
@pytest.mark.benchmark(group="nearest codeword 20000x256x64 (cuda)")
def test_nearest_triton(benchmark, vectors):
    from deepinterest.tokenizers.kernels.triton_nearest import nearest_codeword_triton

    x, c = (t.cuda() for t in vectors)
    nearest_codeword_triton(x, c)  # autotune outside the timing

    def run():
        nearest_codeword_triton(x, c)
        torch.cuda.synchronize()
    benchmark(run)


@pytest.mark.benchmark(group="residual k-means 20000x64, 3 x 64")
def test_rkmeans_ours(benchmark, vectors):
    x = vectors[0]
    benchmark.pedantic(lambda: ResidualKMeans(levels=3, codebook_size=64, backend="torch")
                       .fit(x, seed=0), rounds=3, iterations=1)


@pytest.mark.benchmark(group="residual k-means 20000x64, 3 x 64")
def test_rkmeans_faiss(benchmark, vectors):
    faiss = pytest.importorskip("faiss")
    x = vectors[0].numpy()

    def run():
        residual = x.copy()
        for level in range(3):  # what a user writes with faiss: k-means per level
            km = faiss.Kmeans(D, 64, niter=25, seed=level)
            km.train(residual)
            residual = residual - km.centroids[km.index.search(residual, 1)[1][:, 0]]
    benchmark.pedantic(run, rounds=3, iterations=1)


@pytest.fixture(scope="module")
def t5():
    gen = np.random.default_rng(0)
    codes = torch.tensor(gen.integers(0, 64, size=(4000, 3)))
    catalog = SIDCatalog.from_codes(add_suffix(codes).sids)  # unique, as di tokenize makes them
    torch.manual_seed(0)
    model = T5Backbone(catalog=catalog, **T5_SIZE)
    histories = [tuple(gen.integers(0, 4000, size=20).tolist()) for _ in range(64)]
    batch = HistoryBatch(pad_histories(histories, 20), torch.arange(64))
    return model, catalog, batch


@pytest.mark.benchmark(group="trie-constrained beam search, 64 users, beam 20")
def test_constrained_beam_search(benchmark, t5):
    model, catalog, batch = t5
    trie = SIDTrie.from_catalog(catalog)
    model.eval()
    with torch.no_grad():
        benchmark.pedantic(lambda: constrained_beam_search(model, batch, trie, beam=20, topk=10),
                           rounds=3, iterations=1)


@pytest.mark.benchmark(group="T5 training step, batch 64 x 20 items")
def test_t5_training_step(benchmark, t5):
    model, _, batch = t5
    targets = torch.arange(64)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()

    def step():
        loss = model.loss(batch, targets)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    benchmark.pedantic(step, rounds=5, iterations=1, warmup_rounds=1)
