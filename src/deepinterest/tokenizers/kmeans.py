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
- The k-means++ init is *prefix-consistent*: every sampling step draws one
  uniform number from a seeded ``torch.Generator``, so with the same seed the
  first k centroids chosen for a codebook of size K > k are exactly the k
  centroids chosen for size k. A larger codebook therefore starts from a
  superset of the smaller one's seeds (an init error that can only be lower),
  which is what makes "more codes, never more error" hold in practice; Lloyd
  can only lower each run's error further, but is not proven to keep the
  order, so the tests check it across a grid of sizes.
- Lloyd stops when the relative decrease of the inertia (sum of squared
  distances) falls below ``tol`` or after ``max_iter`` centroid updates
  (faiss's default ``niter=25``). The loop always ends with an assignment
  step, so the returned assignments are exactly what :meth:`KMeans.assign`
  gives for the returned centroids (residual k-means relies on that).
- An empty cluster is re-seeded with the point farthest from its centroid
  (one distinct point per empty cluster, farthest first). That point is the
  single largest contributor to the inertia, so the move lowers the error
  the most of any single-point re-seed, and it needs no randomness.
  faiss instead splits the largest cluster; both remove the empty code.
- ``backend="faiss"`` runs faiss's Lloyd (from our k-means++ init, on all
  points: its default subsampling to 256 points per centroid is switched off
  so both engines solve the same problem). faiss has no tolerance: it always
  runs ``max_iter`` iterations. ``"auto"`` uses the torch path: measured on
  Beauty embeddings (12,101 x 384, 3 x 256, 2 CPU cores, see
  ``benchmarks/bench_rkmeans.py``) it is as fast as faiss per iteration and
  its early stop makes the whole fit faster, so faiss is never the faster
  choice there; it stays available for users who want faiss's exact numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import DeepInterestError, require
from .kernels import NearestResult, nearest_codeword

BACKENDS = ("auto", "torch", "faiss")


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


def kmeans_plus_plus(x: torch.Tensor, k: int, *, generator: torch.Generator) -> torch.Tensor:
    """``k`` seeds drawn by k-means++ (D^2 sampling) from the rows of ``x``; prefix-consistent in ``k``.

    When fewer than ``k`` distinct points exist, the remaining seeds repeat
    points (the empty-cluster repair cannot fix that, and should not).
    """
    n = x.shape[0]
    norms = (x * x).sum(dim=1)
    chosen = torch.empty(k, dtype=torch.long, device=x.device)
    chosen[0] = int(torch.randint(n, (1,), generator=generator))
    closest = _distances_to(x, norms, chosen[:1])
    for step in range(1, k):
        cumulative = torch.cumsum(closest, dim=0, dtype=torch.float64)
        target = torch.rand(1, generator=generator, dtype=torch.float64).to(x.device) * cumulative[-1:]
        # right=True skips points whose weight is 0 (already chosen); when every
        # weight is 0 the search runs off the end and the clamp repeats a point.
        pick = torch.searchsorted(cumulative, target, right=True).clamp_max_(n - 1)
        chosen[step] = pick[0]
        torch.minimum(closest, _distances_to(x, norms, pick), out=closest)
    return x[chosen].clone()


def _distances_to(x: torch.Tensor, norms: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Squared distances of every row of ``x`` to row ``index`` (a 1-element tensor), clamped at 0."""
    point = x[index[0]]
    dist = torch.addmv(norms + norms[index[0]], x, point, alpha=-2.0).clamp_min_(0.0)
    dist[index[0]] = 0.0  # exact zero, whatever the cancellation error
    return dist


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
    return KMeansResult(centroids, nearest.indices, nearest.distances, inertia, iterations, repaired)


def faiss_lloyd(x: torch.Tensor, centroids: torch.Tensor, *, max_iter: int, seed: int) -> KMeansResult:
    """faiss's Lloyd from ``centroids`` (CPU), re-assigned through ``nearest_codeword``."""
    faiss = require("faiss", "faiss", "k-means with backend='faiss'")
    k, d = centroids.shape
    n = x.shape[0]
    km = faiss.Kmeans(
        d, k, niter=max_iter, seed=seed, min_points_per_centroid=1, max_points_per_centroid=n // k + 1
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
    subset, the same for every K so the init stays prefix-consistent).
    """

    def __init__(
        self,
        *,
        codebook_size: int = 256,
        max_iter: int = 25,
        tol: float = 1e-4,
        backend: str = "auto",
        init_sample: int | None = 65536,
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

    def resolved_backend(self, x: torch.Tensor) -> str:
        """``"torch"`` or ``"faiss"``: the engine :meth:`train` will use for ``x`` (see module docstring)."""
        return "faiss" if self.backend == "faiss" else "torch"

    def init_centroids(self, x: torch.Tensor, *, seed: int) -> torch.Tensor:
        """k-means++ seeds from a seeded subset of at most ``init_sample`` rows of ``x``."""
        generator = torch.Generator().manual_seed(seed)
        pool = x
        if self.init_sample is not None and x.shape[0] > self.init_sample:
            pool = x[torch.randperm(x.shape[0], generator=generator)[: self.init_sample].to(x.device)]
        return kmeans_plus_plus(pool, self.codebook_size, generator=generator)

    @torch.no_grad()
    def train(self, x: torch.Tensor, *, seed: int = 0) -> KMeansResult:
        """Fit the centroids to ``x`` [N, D] (float32) and return the full result."""
        if not x.is_floating_point() or x.dim() != 2 or x.shape[0] == 0:
            raise DeepInterestError(f"k-means needs a non-empty float [N, D] matrix, got {tuple(x.shape)}")
        x = x.to(torch.float32).contiguous()
        seeds = self.init_centroids(x, seed=seed)
        if self.resolved_backend(x) == "faiss":
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
