"""Single-level k-means: k-means++ init, Lloyd iterations, empty-cluster repair.

    km = KMeans(codebook_size=256)
    result = km.train(x, seed=0)      # KMeansResult: centroids, assignments, distances, ...
    km.assign(x_new).indices          # nearest centroid of new vectors

This is the building block of :class:`~deepinterest.tokenizers.rkmeans.ResidualKMeans`
and the codebook initialiser of the RQ-VAE. Design decisions:

- Every nearest-centroid search goes through
  :func:`deepinterest.tokenizers.kernels.nearest_codeword`, so on GPU the
  Triton kernel is the hot path and on CPU one chunked matmul per iteration
  is. The centroid update is one ``index_add_`` (O(N D)) plus a ``bincount``,
  never an N x K one-hot.
- Init: greedy k-means++ (each step draws ``INIT_TRIALS`` = 3 candidates by
  D^2 sampling and keeps the one that lowers the potential most) on a seeded
  random pool of at most ``init_sample`` = 4096 rows, whose pairwise
  distances are computed once by one matmul (64 MB). The K sequential steps
  then only gather rows of that matrix, too little work per step for PyTorch
  to spread over threads. The alternative, one small matmul per step (765
  per 3-level fit), was as fast on an idle 2-core machine but 1.9x slower
  than faiss whenever other jobs shared the cores: each step became a
  parallel region waiting for a descheduled thread. Measured on Beauty
  (12,101 x 384, 3 x 256, 5 seeds, relative MSE mean / worst): pool 4096
  0.3847 / 0.3921, pool 6144 0.3817 / 0.3827 (but a 151 MB matrix and 0.3 s
  more per fit), plain k-means++ on all rows 0.38-0.40, scikit-learn's
  2 + ln k = 7 trials no better; faiss's random init 0.3885 / 0.3925.
- The init is *prefix-consistent*: every step draws the same number of
  uniforms from a seeded ``torch.Generator`` and the pool does not depend on
  K (below ``init_sample / 2`` codes), so with the same seed the first k
  seeds chosen for a codebook of size K > k are exactly the k seeds chosen
  for size k. A larger codebook starts from a superset of the smaller one's
  seeds (an init error that can only be lower), which is what makes "more
  codes, never more error" hold in practice; Lloyd only lowers each run's
  error further but is not proven to keep the order, so the tests check it
  across a grid of sizes.
- Lloyd stops when the relative decrease of the inertia (sum of squared
  distances) falls below ``tol`` (5e-4: about 11 updates per level on
  Beauty) or after ``max_iter`` centroid updates (faiss's default
  ``niter=25``). The loop always ends with an assignment step, so the
  returned assignments are exactly what :meth:`KMeans.assign` gives for the
  returned centroids (residual k-means relies on that).
- An empty cluster is re-seeded with the point farthest from its centroid
  (one distinct point per empty cluster, farthest first). That point is the
  single largest contributor to the inertia, so the move lowers the error
  the most of any single-point re-seed, and it needs no randomness.
  faiss instead splits the largest cluster; both remove the empty code.
- ``backend="faiss"`` runs faiss's Lloyd from our init, on all points (its
  default subsampling to 256 points per centroid is switched off so both
  engines solve the same problem); faiss has no tolerance and always runs
  ``max_iter`` iterations. ``"auto"`` is the torch path: one Lloyd iteration
  costs the same in both engines (one BLAS matmul dominates), so the early
  stop makes torch the faster whole fit (``benchmarks/bench_rkmeans.py``:
  ours-torch vs ours-faiss-lloyd on Beauty), and it is the only choice on
  GPU. The faiss backend stays for users who want faiss's exact iterations.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import DeepInterestError, require
from .kernels import NearestResult, nearest_codeword

BACKENDS = ("auto", "torch", "faiss")
# Candidates per greedy k-means++ step (see the module docstring).
INIT_TRIALS = 3
# The init pool never drops below this many points per centroid (see init_pool_size).
INIT_POINTS_PER_CENTROID = 2


@dataclass(frozen=True)
class KMeansResult:
    """Outcome of one k-means run.

    ``centroids`` [K, D]; ``assignments`` int64 [N] and ``distances`` float32 [N]
    (squared L2) are the nearest centroid of each training vector under the
    returned centroids; ``inertia`` is the sum of ``distances``; ``iterations``
    counts centroid updates; ``repaired`` counts empty clusters re-seeded.
    """

    centroids: torch.Tensor
    assignments: torch.Tensor
    distances: torch.Tensor
    inertia: float
    iterations: int
    repaired: int


def kmeans_plus_plus(
    x: torch.Tensor, k: int, *, generator: torch.Generator, trials: int | None = None
) -> torch.Tensor:
    """``k`` seeds drawn by greedy k-means++ from the rows of ``x``; prefix-consistent in ``k``.

    Each step draws ``trials`` candidates by D^2 sampling (default
    ``INIT_TRIALS``) and keeps the one that lowers the potential (sum of
    squared distances to the nearest seed) the most; ``trials=1`` is plain
    k-means++. The pairwise distances of the rows are computed once, so ``x``
    should be a pool of a few thousand rows (4096 rows: a 64 MB matrix).
    When fewer than ``k`` distinct points exist, the remaining seeds repeat
    points (the empty-cluster repair cannot fix that, and should not).
    """
    n = x.shape[0]
    trials = trials if trials is not None else INIT_TRIALS
    pairwise = _pairwise_distances(x)
    chosen = torch.empty(k, dtype=torch.long, device=x.device)
    chosen[0] = int(torch.randint(n, (1,), generator=generator))
    closest = pairwise[chosen[0]]
    for step in range(1, k):
        cumulative = torch.cumsum(closest, dim=0, dtype=torch.float64)
        targets = torch.rand(trials, generator=generator, dtype=torch.float64).to(x.device)
        # right=True skips points whose weight is 0 (already chosen); when every
        # weight is 0 the search runs off the end and the clamp repeats a point.
        candidates = torch.searchsorted(cumulative, targets * cumulative[-1], right=True)
        candidates.clamp_max_(n - 1)
        potential = torch.minimum(pairwise.index_select(0, candidates), closest)
        best = potential.sum(dim=1).argmin()
        chosen[step] = candidates[best]
        closest = potential[best]
    return x[chosen].clone()


def _pairwise_distances(x: torch.Tensor) -> torch.Tensor:
    """Squared distances [N, N] between rows, clamped at 0, exactly 0 on the diagonal."""
    norms = (x * x).sum(dim=1)
    dist = torch.addmm(norms.unsqueeze(1), x, x.t(), alpha=-2.0)
    return dist.add_(norms).clamp_min_(0.0).fill_diagonal_(0.0)


def _update_centroids(
    x: torch.Tensor, nearest: NearestResult, centroids: torch.Tensor
) -> tuple[torch.Tensor, int]:
    """Lloyd update: mean of each cluster; empty clusters re-seeded with the farthest points."""
    k = centroids.shape[0]
    counts = torch.bincount(nearest.indices, minlength=k)
    sums = torch.zeros_like(centroids).index_add_(0, nearest.indices, x)
    updated = sums / counts.clamp_min(1).unsqueeze(1).to(x.dtype)
    empty = (counts == 0).nonzero().squeeze(1)
    if empty.numel():
        farthest = torch.topk(nearest.distances, min(empty.numel(), x.shape[0])).indices
        updated[empty[: farthest.numel()]] = x[farthest]
    return updated, int(empty.numel())


def lloyd(
    x: torch.Tensor, centroids: torch.Tensor, *, max_iter: int, tol: float, kernel: str = "auto"
) -> KMeansResult:
    """Lloyd iterations from ``centroids`` until the relative inertia decrease is below ``tol``."""
    nearest = nearest_codeword(x, centroids, backend=kernel)
    inertia = float(nearest.distances.sum(dtype=torch.float64))
    iterations = repaired = 0
    while iterations < max_iter:
        centroids, empty = _update_centroids(x, nearest, centroids)
        nearest = nearest_codeword(x, centroids, backend=kernel)
        previous, inertia = inertia, float(nearest.distances.sum(dtype=torch.float64))
        iterations, repaired = iterations + 1, repaired + empty
        # A repair step is never the last one: the re-seeded codes need an update.
        if not empty and previous - inertia <= tol * previous:
            break
    return KMeansResult(
        centroids, nearest.indices, nearest.distances, inertia, iterations, repaired
    )


def faiss_lloyd(
    x: torch.Tensor, centroids: torch.Tensor, *, max_iter: int, seed: int
) -> KMeansResult:
    """faiss's Lloyd from ``centroids`` (CPU), re-assigned through ``nearest_codeword``."""
    faiss = require("faiss", "faiss", "k-means with backend='faiss'")
    k, d = centroids.shape
    n = x.shape[0]
    km = faiss.Kmeans(
        d, k, niter=max_iter, seed=seed,
        min_points_per_centroid=1, max_points_per_centroid=n // k + 1,  # no subsampling
    )
    km.train(x.detach().cpu().numpy(), init_centroids=centroids.detach().cpu().numpy())
    fitted = torch.from_numpy(km.centroids.copy()).to(x.device)
    nearest = nearest_codeword(x, fitted)
    repaired = sum(int(s.get("nsplit", 0)) for s in km.iteration_stats)
    inertia = float(nearest.distances.sum(dtype=torch.float64))
    return KMeansResult(fitted, nearest.indices, nearest.distances, inertia, max_iter, repaired)


class KMeans:
    """Single-level k-means estimator (keyword-only configuration).

    ``codebook_size`` K; ``max_iter`` centroid updates at most; ``tol`` relative
    inertia decrease that stops Lloyd; ``backend`` ``"auto"|"torch"|"faiss"``;
    ``init_sample`` caps the points k-means++ samples from (a seeded random
    subset, the same for every K so the init stays prefix-consistent; its
    pairwise distance matrix takes ``4 * init_sample**2`` bytes).
    """

    def __init__(
        self,
        *,
        codebook_size: int = 256,
        max_iter: int = 25,
        tol: float = 5e-4,
        backend: str = "auto",
        init_sample: int | None = 4096,
    ):
        if codebook_size < 1:
            raise DeepInterestError(f"codebook_size must be >= 1, got {codebook_size}")
        if backend not in BACKENDS:
            raise DeepInterestError(f"k-means backend must be one of {BACKENDS}, got {backend!r}")
        if max_iter < 0 or tol < 0:
            raise DeepInterestError(f"max_iter and tol must be >= 0, got {max_iter} and {tol}")
        self.codebook_size = codebook_size
        self.max_iter = max_iter
        self.tol = tol
        self.backend = backend
        self.init_sample = init_sample
        self.centroids: torch.Tensor | None = None

    def init_pool_size(self, n: int) -> int:
        """Rows the init samples from: ``init_sample``, at least 2 per centroid, at most ``n``."""
        if self.init_sample is None:
            return n
        return min(n, max(self.init_sample, INIT_POINTS_PER_CENTROID * self.codebook_size))

    def init_centroids(self, x: torch.Tensor, *, seed: int) -> torch.Tensor:
        """Greedy k-means++ seeds from a seeded random subset of :meth:`init_pool_size` rows."""
        generator = torch.Generator().manual_seed(seed)
        pool = x
        size = self.init_pool_size(x.shape[0])
        if size < x.shape[0]:
            pool = x[torch.randperm(x.shape[0], generator=generator)[:size].to(x.device)]
        return kmeans_plus_plus(pool, self.codebook_size, generator=generator)

    @torch.no_grad()
    def train(self, x: torch.Tensor, *, seed: int = 0) -> KMeansResult:
        """Fit the centroids to ``x`` [N, D] (float32) and return the full result."""
        if not x.is_floating_point() or x.dim() != 2 or x.shape[0] == 0:
            raise DeepInterestError(
                f"k-means needs a non-empty float [N, D] matrix, got {tuple(x.shape)}"
            )
        x = x.to(torch.float32).contiguous()
        seeds = self.init_centroids(x, seed=seed)
        if self.backend == "faiss":  # "auto" is torch, see the module docstring
            result = faiss_lloyd(x, seeds, max_iter=self.max_iter, seed=seed)
        else:
            result = lloyd(x, seeds, max_iter=self.max_iter, tol=self.tol)
        self.centroids = result.centroids
        return result

    def assign(self, x: torch.Tensor) -> NearestResult:
        """Nearest centroid (index, squared distance) of each row of ``x``."""
        if self.centroids is None:
            raise DeepInterestError("KMeans.assign called before train")
        return nearest_codeword(x, self.centroids.to(x.device))
