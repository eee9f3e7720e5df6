"""Fused nearest-codeword search as a Triton kernel (the GPU hot path).

The dispatcher (:mod:`deepinterest.tokenizers.kernels`) imports this module
only once the Triton path has been chosen, so ``import deepinterest`` never
needs triton. Call it through ``nearest_codeword``; the benchmark imports it
directly to try other precisions.

Design decisions:

- **Fused distance + argmin.** Each program owns BLOCK_N rows of x, walks the
  codebook in BLOCK_K-code tiles (and each tile's dot products over D in
  BLOCK_D slices), and keeps a running (min, argmin) per row in registers.
  The N x K distance matrix is never written to memory: at 1M vectors x 4096
  codes it is 16 GB, which the reference has to chunk around and write, then
  read back several times (add, clamp, min). The kernel's only global writes
  are N indices and N distances; x and codebook tiles are re-read from L2.
- **Same formula as the reference.** distance = (||x||^2 - 2 x.c) + ||c||^2,
  clamped at 0 before the argmin. Both squared norms are computed once in
  torch by :func:`reference.squared_norms`, the function the reference uses,
  so the two backends differ only in the summation order of x.c; on data
  whose dot products are exact in float32 (small integers) they agree bit for
  bit, indices included.
- **Ties go to the lowest index.** Inside a tile ``tl.min(...,
  return_indices=True)`` breaks ties to the left (lowest column); across tiles
  the running minimum is replaced only on a strict ``<``, so an earlier
  (lower-index) tile keeps a tie. Same rule as ``torch.argmin``.
- **Precision.** Accumulation is float32 and ``tl.dot`` runs with
  ``input_precision="ieee"``: TF32 (Triton's default on Ampere+) keeps 10
  mantissa bits of each input, which moves distances by ~1e-3 relative and
  flips argmins between close codewords, so GPU codes would no longer match
  CPU codes. ``"tf32"``/``"tf32x3"`` stay available for benchmarking.
- **Tails.** Rows, codes and dimensions beyond N, K, D are masked: padded
  dimensions load as 0 (adding nothing to x.c), padded codes get +inf distance
  (never chosen), padded rows are not stored. Offsets are computed in int64 so
  N x D beyond 2**31 elements does not overflow.
- **When TRITON_INTERPRET is read.** Triton 3.9 reads ``TRITON_INTERPRET``
  live from the environment, but only at ``triton.jit`` *decoration* time:
  the decorator returns an ``InterpretedFunction`` (runs on CPU tensors with
  NumPy) or a compiled ``JITFunction``; the launch never looks at it. Triton's
  own helpers used here (``tl.zeros``, ``tl.min``) are ``@jit`` functions
  decorated when ``triton.language`` is imported, so in practice the variable
  must be set *before the process imports triton*; setting it later yields
  "Cannot call @triton.jit'd outside of the scope of a kernel".
  :func:`interpreter_active` detects that mismatch so the dispatcher can say
  so plainly, and tests run the interpreter in a fresh subprocess.
- **Block sizes.** On GPU the block shape is autotuned over a few configs
  (see :func:`_gpu_configs`), keyed on (K, D) and a power-of-two bucket of N
  (capped) so that a first call on a tiny N does not fix the choice for the
  1M-row calls; the first call per key pays compilation and timing (seconds).
  Under the interpreter (tests) fixed 16-wide blocks keep it fast and still
  exercise several tiles and every tail.
- **Speed, honestly.** With ``"ieee"`` the dot products run on FP32 FMA
  units, like cuBLAS SGEMM in the reference, so the gain comes from the
  memory traffic saved, not from faster arithmetic. Whether that beats
  cuBLAS + argmin at a given size is what ``benchmarks/gpu_nearest.py``
  measures; it had not been run on a GPU when this was written.
"""

from __future__ import annotations

import contextlib
import functools

import torch
import triton
import triton.language as tl

from .reference import squared_norms

# Under the interpreter: small blocks so test shapes span several tiles in
# every dimension (tails and cross-tile tie-breaking are exercised).
INTERPRET_BLOCKS = (16, 16, 16)
# Explicit block sizes: powers of two >= 16, a tl.dot shape valid for every
# input precision (TF32 tensor-core tiles need 16 in M and N).
MIN_BLOCK = 16
# N above this shares one autotuning result; below it, one per power of two.
_N_BUCKET_CAP = 1 << 16
_PRECISIONS = ("ieee", "tf32", "tf32x3")


def _nearest_kernel(
    x_ptr, c_ptr, x_norm_ptr, c_norm_ptr, out_idx_ptr, out_dist_ptr,
    N, K, D, N_BUCKET,
    BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr,
    INPUT_PRECISION: tl.constexpr,
):
    # N_BUCKET is unused in the body: it only feeds the autotuning key.
    rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    row_mask = rows < N
    x_rows = x_ptr + rows.to(tl.int64)[:, None] * D
    x_norm = tl.load(x_norm_ptr + rows, mask=row_mask, other=0.0)
    best = tl.full([BLOCK_N], float("inf"), tl.float32)
    best_idx = tl.zeros([BLOCK_N], dtype=tl.int32)
    for k0 in range(0, K, BLOCK_K):
        cols = k0 + tl.arange(0, BLOCK_K)
        col_mask = cols < K
        c_rows = c_ptr + cols.to(tl.int64)[:, None] * D
        acc = tl.zeros([BLOCK_N, BLOCK_K], dtype=tl.float32)
        for d0 in range(0, D, BLOCK_D):
            dims = d0 + tl.arange(0, BLOCK_D)
            dim_mask = dims < D
            xt = tl.load(x_rows + dims[None, :], mask=row_mask[:, None] & dim_mask[None, :], other=0.0)
            ct = tl.load(c_rows + dims[None, :], mask=col_mask[:, None] & dim_mask[None, :], other=0.0)
            acc = tl.dot(xt, tl.trans(ct), acc, input_precision=INPUT_PRECISION)
        c_norm = tl.load(c_norm_ptr + cols, mask=col_mask, other=0.0)
        # Same association as the reference: (||x||^2 - 2 x.c) + ||c||^2.
        dist = (x_norm[:, None] - 2.0 * acc) + c_norm[None, :]
        dist = tl.maximum(dist, 0.0)
        dist = tl.where(col_mask[None, :], dist, float("inf"))
        tile_best, tile_idx = tl.min(dist, axis=1, return_indices=True, return_indices_tie_break_left=True)
        better = tile_best < best  # strict: an earlier (lower-index) tile keeps ties
        best = tl.where(better, tile_best, best)
        best_idx = tl.where(better, tile_idx + k0, best_idx)
    tl.store(out_idx_ptr + rows, best_idx.to(tl.int64), mask=row_mask)
    tl.store(out_dist_ptr + rows, best, mask=row_mask)


# Decorated at import, like Triton's own helpers, so both are in the same mode.
_KERNEL = triton.jit(_nearest_kernel)


def interpreter_active() -> bool:
    """True when this kernel and Triton's standard library were both decorated in interpreter mode.

    False when ``TRITON_INTERPRET=1`` was set only after triton was imported:
    the interpreter cannot run then, whatever the environment says now.
    """
    from triton.runtime.interpreter import InterpretedFunction

    return isinstance(_KERNEL, InterpretedFunction) and isinstance(tl.zeros, InterpretedFunction)


def _gpu_configs() -> list:
    # (BLOCK_N, BLOCK_K, BLOCK_D, warps, stages). The ieee dot is lowered to
    # FMAs with operands in registers, so register pressure, not shared memory,
    # limits the tile: these are the shapes that ptxas (sm_90, Triton 3.9)
    # compiles with no spills, except the last (16 bytes), kept as the widest
    # tile. 4-warp variants of the wide tiles spill hundreds of bytes.
    shapes = [
        (64, 64, 32, 8, 2), (64, 128, 32, 8, 2), (128, 64, 32, 8, 2),
        (64, 128, 16, 8, 3), (128, 64, 16, 8, 2), (64, 64, 16, 4, 3), (128, 128, 32, 8, 2),
    ]
    return [
        triton.Config({"BLOCK_N": bn, "BLOCK_K": bk, "BLOCK_D": bd}, num_warps=w, num_stages=st)
        for bn, bk, bd, w, st in shapes
    ]


@functools.lru_cache(maxsize=1)
def _tuned_kernel():
    return triton.autotune(configs=_gpu_configs(), key=["K", "D", "N_BUCKET"])(_KERNEL)


def _n_bucket(n: int) -> int:
    return min(triton.next_power_of_2(n), _N_BUCKET_CAP)


def _check_blocks(block_sizes: tuple[int, int, int]) -> tuple[int, int, int]:
    for b in block_sizes:
        if b < MIN_BLOCK or b & (b - 1):
            raise ValueError(f"block sizes must be powers of two >= {MIN_BLOCK}, got {block_sizes}")
    return block_sizes


def _launch(x, c, x_norms, c_norms, indices, distances, block_sizes, precision) -> None:
    n, d = x.shape
    k = c.shape[0]
    args = (x, c, x_norms, c_norms, indices, distances, n, k, d, _n_bucket(n))
    # FMA contraction on: the ieee dot is FMA-bound and cuBLAS contracts too.
    # Explicit because Triton 3.9 warns that its default flips in 3.10.
    opts = {"INPUT_PRECISION": precision, "enable_fp_fusion": True}
    if block_sizes is None and not interpreter_active():
        grid = lambda meta: (triton.cdiv(n, meta["BLOCK_N"]),)  # noqa: E731
        _tuned_kernel()[grid](*args, **opts)
        return
    bn, bk, bd = _check_blocks(block_sizes or INTERPRET_BLOCKS)
    _KERNEL[(triton.cdiv(n, bn),)](*args, BLOCK_N=bn, BLOCK_K=bk, BLOCK_D=bd, **opts)


@torch.no_grad()
def nearest_codeword_triton(
    x: torch.Tensor,
    codebook: torch.Tensor,
    *,
    block_sizes: tuple[int, int, int] | None = None,
    input_precision: str = "ieee",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Index (int64 [N]) and squared L2 distance (float32 [N]) of each row's nearest codeword.

    Inputs are assumed validated by the dispatcher. ``block_sizes`` =
    (BLOCK_N, BLOCK_K, BLOCK_D) bypasses autotuning (tests, benchmarks);
    ``input_precision`` other than ``"ieee"`` trades exactness for speed and is
    meant for benchmarks only.
    """
    if input_precision not in _PRECISIONS:
        raise ValueError(f"input_precision must be one of {_PRECISIONS}, got {input_precision!r}")
    x = x.to(torch.float32).contiguous()
    c = codebook.to(torch.float32).contiguous()
    n = x.shape[0]
    indices = torch.empty(n, dtype=torch.int64, device=x.device)
    distances = torch.empty(n, dtype=torch.float32, device=x.device)
    if n == 0:
        return indices, distances
    # Triton launches on the current CUDA device; make it the tensors' device.
    device_ctx = torch.cuda.device(x.device) if x.is_cuda else contextlib.nullcontext()
    with device_ctx:
        _launch(x, c, squared_norms(x), squared_norms(c), indices, distances, block_sizes, input_precision)
    return indices, distances
