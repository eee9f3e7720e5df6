"""Quantizer invariants: k-means, residual k-means and RQ-VAE (docs/tokenizers.md)."""

import math

import numpy as np
import pytest
import torch

from deepinterest.errors import DeepInterestError
from deepinterest.tokenizers.base import Quantizer, code_stats, reconstruction_errors
from deepinterest.tokenizers.kernels import nearest_codeword
from deepinterest.tokenizers.kmeans import KMeans, kmeans_plus_plus, lloyd
from deepinterest.tokenizers.rkmeans import ResidualKMeans
from deepinterest.tokenizers.rqvae import RQVAE


def clustered(n=600, d=16, clusters=24, noise=0.15, seed=0):
    """Gaussian blobs: structure every quantizer can exploit, cheap to fit."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(clusters, d, generator=g)
    return centres[torch.arange(n) % clusters] + noise * torch.randn(n, d, generator=g)


# ---- code statistics -------------------------------------------------------------


def test_code_stats_hand_worked():
    stats = code_stats(torch.tensor([[0, 1], [0, 1], [1, 1], [2, 0]]), (4, 2))
    assert stats.used == (3, 2)
    assert stats.usage == (0.75, 1.0)
    # level 0 frequencies 1/2, 1/4, 1/4 -> exp(H) = 2**1.5; level 1: 1/4, 3/4.
    assert stats.perplexity[0] == pytest.approx(2**1.5)
    entropy = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    assert stats.perplexity[1] == pytest.approx(math.exp(entropy))


def test_relative_mse_is_one_for_the_mean_predictor():
    x = clustered()
    mse, relative = reconstruction_errors(x, x.mean(dim=0).expand_as(x))
    assert relative == pytest.approx(1.0)
    assert mse == pytest.approx(float(((x - x.mean(0)) ** 2).mean()))


# ---- single-level k-means ----------------------------------------------------------


def test_kmeans_plus_plus_is_prefix_consistent():
    x = clustered()
    small = kmeans_plus_plus(x, 8, generator=torch.Generator().manual_seed(3))
    large = kmeans_plus_plus(x, 20, generator=torch.Generator().manual_seed(3), trials=4)
    larger = kmeans_plus_plus(x, 32, generator=torch.Generator().manual_seed(3), trials=4)
    assert torch.equal(large, larger[:20])
    assert small.shape == (8, 16)
    assert len({tuple(r) for r in larger.tolist()}) == 32  # distinct points


def test_kmeans_recovers_separated_clusters():
    x = clustered(n=400, clusters=8, noise=0.05)
    result = KMeans(codebook_size=8, backend="torch").train(x, seed=0)
    truth = torch.arange(400) % 8
    # Each found cluster is exactly one true cluster.
    pairs = {(int(a), int(t)) for a, t in zip(result.assignments, truth)}
    assert len(pairs) == 8 and len({a for a, _ in pairs}) == 8
    assert result.repaired == 0


def test_lloyd_assignments_match_nearest_codeword_of_returned_centroids():
    x = clustered()
    km = KMeans(codebook_size=32, max_iter=5, backend="torch")
    result = km.train(x, seed=1)
    nearest = nearest_codeword(x, result.centroids)
    assert torch.equal(result.assignments, nearest.indices)
    assert torch.equal(result.distances, nearest.distances)
    assert torch.equal(km.assign(x).indices, result.assignments)
    assert result.inertia == pytest.approx(float(nearest.distances.double().sum()))


def test_empty_cluster_repair_reseeds_with_the_farthest_point():
    # Centroid 2 (at 100) attracts nothing; the point farthest from its
    # centroid after the first assignment is x=1 (distance 1 to centroid 0).
    x = torch.tensor([[0.0], [1.0], [10.0], [11.0]])
    result = lloyd(x, torch.tensor([[0.0], [10.5], [100.0]]), max_iter=10, tol=0.0)
    assert result.repaired == 1
    assert torch.equal(result.centroids, torch.tensor([[0.0], [10.5], [1.0]]))
    assert result.assignments.tolist() == [0, 2, 1, 1]
    assert torch.bincount(result.assignments, minlength=3).min() > 0


def test_kmeans_with_fewer_points_than_codes_repeats_points():
    x = torch.tensor([[0.0, 0.0], [1.0, 1.0], [2.0, 0.0]])
    result = KMeans(codebook_size=5, backend="torch").train(x, seed=0)
    assert result.centroids.shape == (5, 2)
    assert result.inertia == 0.0


def test_faiss_backend_matches_torch_from_the_same_init():
    pytest.importorskip("faiss")
    x = clustered(n=800, clusters=16, noise=0.05)
    ours = KMeans(codebook_size=16, max_iter=10, tol=0.0, backend="torch").train(x, seed=0)
    theirs = KMeans(codebook_size=16, max_iter=10, tol=0.0, backend="faiss").train(x, seed=0)
    assert torch.equal(ours.assignments, theirs.assignments)
    assert torch.allclose(ours.centroids, theirs.centroids, atol=1e-5)


# ---- residual k-means --------------------------------------------------------------

GRID = [((4,), "torch"), ((8, 8), "torch"), ((16, 4, 8), "torch"), ((16, 16), "faiss")]


@pytest.mark.parametrize("sizes,backend", GRID)
def test_decode_of_encode_is_the_fitted_quantized_output(sizes, backend):
    if backend == "faiss":
        pytest.importorskip("faiss")
    x = clustered()
    rk = ResidualKMeans(codebook_sizes=sizes, backend=backend)
    report = rk.fit(x, seed=0)
    codes = rk.encode(x)
    quantized = rk.quantize(x)
    assert codes.shape == (600, len(sizes)) and codes.dtype == torch.int64
    assert torch.equal(rk.decode(codes), quantized.quantized)
    # The fit measured its error on its own running sum of codewords; equality
    # of the figures means encode reproduced the fit's codes bit for bit.
    assert (report.mse, report.relative_mse) == reconstruction_errors(x, rk.decode(codes))
    if len(sizes) > 1:
        assert torch.allclose(quantized.last_input, x - rk.decode(codes[:, :-1]), atol=1e-5)
    assert torch.equal(rk.decode(codes[:, :1]), rk.codebooks[0][codes[:, 0]])


def test_encode_and_fit_are_deterministic():
    x = clustered()
    a, b = ResidualKMeans(levels=2, codebook_size=16), ResidualKMeans(levels=2, codebook_size=16)
    report_a, report_b = a.fit(x, seed=7), b.fit(x, seed=7)
    assert all(torch.equal(p, q) for p, q in zip(a.codebooks, b.codebooks))
    assert report_a.relative_mse == report_b.relative_mse
    assert torch.equal(a.encode(x), a.encode(x))


def test_different_seeds_give_different_codebooks():
    x = clustered()
    a, b = ResidualKMeans(levels=1, codebook_size=16), ResidualKMeans(levels=1, codebook_size=16)
    a.fit(x, seed=0)
    b.fit(x, seed=1)
    assert not torch.equal(a.codebooks[0], b.codebooks[0])


@pytest.mark.parametrize("levels", [1, 2, 3])
def test_larger_codebooks_never_give_higher_error(levels):
    x = clustered(n=800, clusters=48, noise=0.3, seed=levels)
    errors = [
        ResidualKMeans(levels=levels, codebook_size=k).fit(x, seed=0).relative_mse
        for k in (2, 4, 8, 16, 32, 64)
    ]
    assert errors == sorted(errors, reverse=True), errors
    assert errors[-1] < errors[0]


def test_more_levels_never_give_higher_error():
    x = clustered(n=800, clusters=48, noise=0.3)
    errors = [
        ResidualKMeans(levels=levels, codebook_size=16).fit(x, seed=0).relative_mse
        for levels in (1, 2, 3, 4)
    ]
    assert errors == sorted(errors, reverse=True), errors


def test_save_load_round_trip_encodes_new_items_identically(tmp_path):
    x = clustered()
    rk = ResidualKMeans(codebook_sizes=(16, 8), tol=1e-3)
    rk.fit(x[:500], seed=0)
    rk.save(tmp_path / "rk")
    loaded = ResidualKMeans.load(tmp_path / "rk")
    assert loaded.codebook_sizes == (16, 8) and loaded.options == rk.options
    assert torch.equal(loaded.encode(x[500:]), rk.encode(x[500:]))  # cold-start items
    assert torch.equal(loaded.decode(rk.encode(x)), rk.decode(rk.encode(x)))
    with pytest.raises(DeepInterestError, match="rkmeans"):
        RQVAE.load(tmp_path / "rk")


def test_encode_accepts_numpy_and_rejects_bad_input():
    x = clustered()
    rk = ResidualKMeans(levels=1, codebook_size=4)
    with pytest.raises(DeepInterestError, match="not fitted"):
        rk.encode(x)
    rk.fit(x.numpy())
    assert torch.equal(rk.encode(x.numpy()), rk.encode(x))
    bad = x.clone()
    bad[5, 2] = float("nan")
    with pytest.raises(DeepInterestError, match="row 5"):
        rk.encode(bad)
    with pytest.raises(DeepInterestError, match="row 1, level 0"):
        rk.decode(torch.tensor([[0], [4]]))


def test_quantizers_satisfy_the_protocol():
    assert isinstance(ResidualKMeans(), Quantizer)
    assert isinstance(RQVAE(), Quantizer)


# ---- RQ-VAE -------------------------------------------------------------------------

TINY = dict(
    levels=2, codebook_size=16, hidden_dims=(32,), latent_dim=8,
    batch_size=128, epochs=12, patience=50, lr=1e-2,
)


@pytest.fixture(scope="module")
def fitted_rqvae():
    x = clustered(n=512)
    rq = RQVAE(**TINY, dead_after=3)
    return x, rq, rq.fit(x, seed=0)


def test_rqvae_loss_decreases_and_dead_codes_restart(fitted_rqvae):
    _, _, report = fitted_rqvae
    recon = [h["reconstruction"] for h in report.history]
    assert len(recon) == 12 and report.iterations == (12,)
    assert recon[-1] < 0.5 * recon[0]
    assert sum(report.repaired) > 0
    per_level = [sum(int(h[f"restarts_{lv}"]) for h in report.history) for lv in (0, 1)]
    assert report.repaired == tuple(per_level)


def test_rqvae_encode_decode_and_codes_follow_the_nearest_codeword_chain(fitted_rqvae):
    x, rq, report = fitted_rqvae
    codes = rq.encode(x)
    assert codes.shape == (512, 2)
    with torch.no_grad():
        latent = rq.net.encoder(x)
        first = nearest_codeword(latent, rq.codebooks[0]).indices
        second = nearest_codeword(latent - rq.codebooks[0][first], rq.codebooks[1]).indices
    assert torch.equal(codes, torch.stack([first, second], dim=1))
    assert torch.allclose(rq.decode(codes), rq.quantize(x).quantized, atol=1e-6)
    assert report.mse == pytest.approx(reconstruction_errors(x, rq.decode(codes))[0], rel=1e-5)


def test_rqvae_is_deterministic_and_leaves_global_rng_alone(fitted_rqvae):
    x, rq, report = fitted_rqvae
    state = torch.get_rng_state()
    again = RQVAE(**TINY, dead_after=3)
    report_again = again.fit(x, seed=0)
    assert torch.equal(torch.get_rng_state(), state)
    assert report_again.history == report.history
    assert torch.equal(again.encode(x), rq.encode(x))


def test_rqvae_early_stopping_restores_the_best_epoch():
    x = clustered(n=256)
    rq = RQVAE(**{**TINY, "epochs": 40, "patience": 2, "min_delta": 0.2})
    report = rq.fit(x, seed=0)
    recon = [h["reconstruction"] for h in report.history]
    assert len(recon) < 40
    # Stopped after 2 epochs without a 20% gain over the last epoch that made one ...
    reference = min(recon[:-2])
    assert all(r >= reference * 0.8 for r in recon[-2:])
    # ... and kept the weights of the lowest-loss epoch, whose model the report describes.
    best = RQVAE(**{**TINY, "epochs": recon.index(min(recon)) + 1, "patience": 100})
    assert best.fit(x, seed=0).relative_mse == report.relative_mse


def test_rqvae_save_load_round_trip(tmp_path, fitted_rqvae):
    x, rq, _ = fitted_rqvae
    rq.save(tmp_path / "rq")
    loaded = RQVAE.load(tmp_path / "rq")
    assert loaded.codebook_sizes == rq.codebook_sizes and loaded.input_dim == 16
    assert torch.equal(loaded.encode(x), rq.encode(x))
    assert torch.equal(loaded.decode(rq.encode(x)), rq.decode(rq.encode(x)))


def test_rqvae_straight_through_reaches_the_encoder():
    x = clustered(n=128)
    rq = RQVAE(**TINY)
    rq.fit(x, seed=0)
    rq.net.zero_grad()
    reconstruction, out = rq.net(x)
    torch.nn.functional.mse_loss(reconstruction, x).backward()
    assert rq.net.encoder[0].weight.grad.abs().sum() > 0
    assert np.isfinite(float(out.loss.detach()))


def test_rqvae_divergence_is_reported_with_the_fix():
    x = torch.randn(256, 8, generator=torch.Generator().manual_seed(0)) * 1e3
    rq = RQVAE(levels=1, codebook_size=4, hidden_dims=(8,), latent_dim=4, epochs=3, lr=1e6)
    with pytest.raises(DeepInterestError, match="diverged.*lower lr"):
        rq.fit(x, seed=0)


# ---- residual k-means with split levels (interest-first SIDs) -------------------------


def test_split_levels_assign_the_prefix_first_then_the_rest(tmp_path):
    x = clustered(n=400, d=12)
    rk = ResidualKMeans(levels=3, codebook_size=8, prefix_dims=5, prefix_levels=1)
    rk.fit(x, seed=3)
    codes = rk.encode(x)
    alone = KMeans(codebook_size=8).train(x[:, :5].contiguous(), seed=3 * 1_000_003)
    assert torch.equal(codes[:, 0], alone.assignments)  # level 1 sees the prefix only
    # The prefix moved onto its own level-1 codeword keeps level 1, and so every later code:
    # those levels read the rest of the vector, minus its cluster's mean rest.
    moved = x.clone()
    moved[:, :5] = rk.codebooks[0][codes[:, 0], :5]
    assert torch.equal(rk.encode(moved), codes)
    rest = x.clone()
    rest[:, 5:] = torch.randn(400, 7, generator=torch.Generator().manual_seed(1))
    assert torch.equal(rk.encode(rest)[:, 0], codes[:, 0])
    assert not torch.equal(rk.encode(rest)[:, 1:], codes[:, 1:])
    means = torch.stack([x[codes[:, 0] == k, 5:].mean(0) for k in range(8)])
    torch.testing.assert_close(rk.codebooks[0][:, 5:], means)
    assert not rk.codebooks[1][:, :5].any() and not rk.codebooks[2][:, :5].any()
    torch.testing.assert_close(rk.decode(codes), rk.quantize(x).quantized)
    rk.save(tmp_path / "q")
    again = ResidualKMeans.load(tmp_path / "q")
    assert (again.prefix_dims, again.prefix_levels) == (5, 1)
    assert torch.equal(again.encode(x), codes)


@pytest.mark.parametrize("dims,levels", [(0, 1), (4, 0), (4, 3)])
def test_split_levels_refuse_a_split_that_leaves_a_side_empty(dims, levels):
    with pytest.raises(DeepInterestError, match="split levels need"):
        ResidualKMeans(levels=3, codebook_size=4, prefix_dims=dims, prefix_levels=levels)
    with pytest.raises(DeepInterestError, match="leaves no dimension"):
        ResidualKMeans(levels=2, codebook_size=4, prefix_dims=6).fit(clustered(n=50, d=6))
