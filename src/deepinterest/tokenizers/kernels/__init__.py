"""Nearest-codeword search, the hot path of both quantizers (docs/tokenizers.md).

    from deepinterest.tokenizers.kernels import nearest_codeword
    res = nearest_codeword(x, codebook)          # x [N, D], codebook [K, D]
    res.indices    # int64 [N], nearest codeword by squared L2, ties -> lowest index
    res.distances  # float32 [N], squared L2 distance to it

Two backends compute the same thing:

- ``"torch"`` (:mod:`.reference`): chunked matmul + argmin. The reference for
  tests and the production path on CPU.
- ``"triton"`` (:mod:`.triton_nearest`): a fused kernel that never materialises
  the N x K distance matrix. Used on CUDA tensors when triton imports.

Selection (:func:`select_backend`): ``backend="auto"`` honours the environment
variable ``DEEPINTEREST_KERNEL=torch|triton`` when set, else picks Triton for
CUDA tensors when triton is importable, else the reference. Forcing
``"triton"`` on CPU tensors works only under ``TRITON_INTERPRET=1`` (Triton's
NumPy interpreter, used by the tests), and the variable must be set before
the process imports triton, because Triton reads it when its ``@jit``
functions are decorated; otherwise it raises instead of failing deep inside
Triton. Triton is imported only when it is about to be used, so
``auto`` on CPU never imports it.

Both backends compute in float32 whatever the input dtype, clamp distances at
0 before the argmin, and break ties to the lowest index, so codes agree across
machines wherever the best and second-best distances are not within float32
rounding of each other (and exactly on data whose dot products are exact).
NaN inputs give unspecified indices; inputs are not checked for finiteness
because that would force a device sync on every call.
"""

from __future__ import annotations

import functools
import os
from typing import NamedTuple

import torch

from ...errors import DeepInterestError
from .reference import nearest_codeword_torch

__all__ = ["BACKENDS", "NearestResult", "interpreting", "nearest_codeword", "select_backend", "triton_available"]

BACKENDS = ("auto", "triton", "torch")
ENV_VAR = "DEEPINTEREST_KERNEL"


class KernelSettingError(DeepInterestError, ValueError):
    """A kernel choice in the environment that names no kernel (a user's setting, not a bug)."""


class NearestResult(NamedTuple):
    """Nearest codeword of each row: ``indices`` int64 [N], ``distances`` float32 [N]."""

    indices: torch.Tensor
    distances: torch.Tensor


@functools.lru_cache(maxsize=1)
def _triton_import_error() -> str | None:
    # Cached: a failed import is slow to retry and will not fix itself mid-run.
    try:
        import triton  # noqa: F401
    except Exception as exc:  # a broken install can raise more than ImportError
        return f"{type(exc).__name__}: {exc}"
    return None


def triton_available() -> bool:
    """True when ``import triton`` succeeds in this environment."""
    return _triton_import_error() is None


def interpreting() -> bool:
    """True when ``TRITON_INTERPRET`` asks Triton to run kernels on CPU tensors (read live)."""
    # Same truthy spellings Triton 3.9 accepts for TRITON_INTERPRET.
    return os.environ.get("TRITON_INTERPRET", "0").strip().lower() in ("1", "true", "yes", "on")


def _requested_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend != "auto":
        return backend
    env = os.environ.get(ENV_VAR, "").strip().lower()
    if env in ("", "auto"):
        return "auto"
    if env not in ("torch", "triton"):
        raise KernelSettingError(f"environment variable {ENV_VAR}={env!r}: expected 'torch', "
                                 "'triton' or 'auto'; change or unset it")
    return env


def _check_triton_usable(device: torch.device) -> None:
    if not triton_available():
        raise ImportError(
            f"backend 'triton' needs triton, which failed to import ({_triton_import_error()}); "
            "install it with `pip install 'deepinterest[triton]'` or use backend='torch'"
        )
    if device.type == "cpu" and not interpreting():
        raise RuntimeError(
            "backend 'triton' on CPU tensors runs only under Triton's interpreter: set TRITON_INTERPRET=1 "
            "in the environment, move the tensors to a CUDA device, or use backend='torch'"
        )
    if device.type not in ("cpu", "cuda"):
        raise RuntimeError(f"backend 'triton' supports CUDA (or CPU under TRITON_INTERPRET=1), not {device.type}")
    if device.type == "cpu":
        from .triton_nearest import interpreter_active

        if not interpreter_active():
            raise RuntimeError(
                "TRITON_INTERPRET=1 is set but triton was imported before it was set, so its kernels were "
                "compiled for GPU; Triton reads the variable when its @jit functions are decorated (at import). "
                "Set TRITON_INTERPRET=1 before starting Python (or before anything imports triton)"
            )


def select_backend(x: torch.Tensor, backend: str = "auto") -> str:
    """The backend (``"torch"`` or ``"triton"``) that :func:`nearest_codeword` will run for ``x``.

    Raises if ``"triton"`` is requested (by argument or ``DEEPINTEREST_KERNEL``)
    but cannot run here, naming what to change.
    """
    chosen = _requested_backend(backend)
    if chosen == "auto":
        return "triton" if x.is_cuda and triton_available() else "torch"
    if chosen == "triton":
        _check_triton_usable(x.device)
    return chosen


def _validate(x: torch.Tensor, codebook: torch.Tensor) -> None:
    for name, t in (("x", x), ("codebook", codebook)):
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() != 2:
            raise ValueError(f"{name} must be 2-D, got shape {tuple(t.shape)}")
        if not t.is_floating_point():
            raise ValueError(f"{name} must be a floating-point tensor, got {t.dtype}")
    if x.shape[1] != codebook.shape[1]:
        raise ValueError(
            f"dimension mismatch: x is {tuple(x.shape)} but codebook is {tuple(codebook.shape)} (D must match)"
        )
    if codebook.shape[0] == 0:
        raise ValueError("codebook is empty (K=0): there is no nearest codeword")
    if codebook.shape[1] == 0:
        raise ValueError("vectors have D=0 dimensions: nothing to compare (check the embedding step)")
    if x.device != codebook.device:
        raise ValueError(f"x is on {x.device} but codebook is on {codebook.device}; move both to one device")


def nearest_codeword(x: torch.Tensor, codebook: torch.Tensor, *, backend: str = "auto") -> NearestResult:
    """Nearest codeword (squared L2) of every row of ``x`` [N, D] in ``codebook`` [K, D].

    Returns :class:`NearestResult` (``indices`` int64 [N], ``distances``
    float32 [N]); ties go to the lowest index; N may be 0. ``backend`` is
    ``"auto"``, ``"triton"`` or ``"torch"`` (see the module docstring).
    No gradient flows through the result.
    """
    _validate(x, codebook)
    if select_backend(x, backend) == "triton":
        from .triton_nearest import nearest_codeword_triton  # lazy: triton is an optional extra

        indices, distances = nearest_codeword_triton(x, codebook)
    else:
        indices, distances = nearest_codeword_torch(x, codebook)
    return NearestResult(indices, distances)
