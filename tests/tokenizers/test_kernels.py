"""Nearest-codeword kernels: reference vs brute force, Triton (interpreter) vs reference, dispatch.

The Triton comparisons run in one fresh subprocess with TRITON_INTERPRET=1:
Triton 3.9 reads that variable when ``@triton.jit`` decorates a function, and
its own helpers (``tl.zeros``, ``tl.min``) are decorated when triton is
imported, so it cannot be switched on inside a process that already imported
triton, and must not leak into other tests. Inputs are generated here, saved
with ``torch.save``; the subprocess only runs the kernel and saves its outputs.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from deepinterest.tokenizers import kernels
from deepinterest.tokenizers.kernels import NearestResult, nearest_codeword, select_backend
from deepinterest.tokenizers.kernels.reference import nearest_codeword_torch

REPO = Path(__file__).resolve().parents[2]
HAS_TRITON = importlib.util.find_spec("triton") is not None
needs_triton = pytest.mark.skipif(not HAS_TRITON, reason="triton is not installed (pip install 'deepinterest[triton]')")
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU: compiled Triton path not testable")


@pytest.fixture(autouse=True)
def _no_kernel_override(monkeypatch):
    # A developer's DEEPINTEREST_KERNEL must not change what these tests check.
    monkeypatch.delenv("DEEPINTEREST_KERNEL", raising=False)


def _brute_force(x: torch.Tensor, c: torch.Tensor) -> np.ndarray:
    """Float64 squared distances [N, K] by explicit differences (no expansion)."""
    xd, cd = x.double().numpy(), c.double().numpy()
    return ((xd[:, None, :] - cd[None, :, :]) ** 2).sum(-1)


def _decided(dist64: np.ndarray, tol: float) -> np.ndarray:
    """Rows whose best and second-best true distances differ by more than tol."""
    part = np.sort(dist64, axis=1)[:, :2]
    return (part[:, 1] - part[:, 0]) > tol


def _int_case(gen: torch.Generator, n: int, k: int, d: int) -> tuple[torch.Tensor, torch.Tensor]:
    # Small integers: every product and sum is exact in float32, so distances
    # are exact, exact ties are frequent, and both backends must agree exactly.
    x = torch.randint(-2, 3, (n, d), generator=gen).float()
    c = torch.randint(-2, 3, (k, d), generator=gen).float()
    return x, c


def _tie_case() -> tuple[torch.Tensor, torch.Tensor]:
    # Copies of codeword 3 at 7 (same 16-wide tile), 20 and 40 (later tiles)
    # and 49 (the tail tile): every copy ties exactly, index 3 must win.
    gen = torch.Generator().manual_seed(7)
    c = torch.randint(-4, 5, (50, 9), generator=gen).float()
    c[3] = 10.0  # far from the others, so the rows below are nearest to it
    for j in (7, 20, 40, 49):
        c[j] = c[3]
    # Rows: on the codeword itself, and at an offset from it (tie at distance > 0).
    x = torch.stack([c[3], c[3] + 1.0, c[3] - 2.0, c[49]])
    return x, c


def _on_codewords_case() -> tuple[torch.Tensor, torch.Tensor]:
    # Rows equal to codewords: the expanded distance cancels to +-rounding
    # noise, which must be clamped to 0 (a negative squared distance would
    # leak into quantization-error statistics).
    gen = torch.Generator().manual_seed(11)
    c = torch.randn(64, 48, generator=gen) * 5
    return c[torch.randperm(64, generator=gen)], c


def _cases() -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(0)
    return {
        "rand_37_19_13": (torch.randn(37, 13, generator=gen), torch.randn(19, 13, generator=gen)),
        "rand_130_64_48": (torch.randn(130, 48, generator=gen), torch.randn(64, 48, generator=gen)),
        "int_37_19_13": _int_case(gen, 37, 19, 13),
        "int_130_64_48": _int_case(gen, 130, 64, 48),
        "int_1_1_1": _int_case(gen, 1, 1, 1),
        "ties": _tie_case(),
        "on_codewords": _on_codewords_case(),
        "empty": (torch.empty(0, 5), torch.randn(4, 5, generator=gen)),
    }


# --------------------------------------------------------------------------- reference


@pytest.mark.parametrize("n,k,d", [(200, 64, 16), (37, 19, 13), (500, 300, 8)])
def test_reference_matches_brute_force(n, k, d):
    gen = torch.Generator().manual_seed(n + k + d)
    x, c = torch.randn(n, d, generator=gen) * 3, torch.randn(k, d, generator=gen) * 3
    res = nearest_codeword(x, c, backend="torch")
    dist64 = _brute_force(x, c)
    scale = float(dist64.max())
    tol = 1e-5 * scale
    decided = _decided(dist64, tol)
    assert decided.mean() > 0.9  # the comparison below is not vacuous
    assert np.array_equal(res.indices.numpy()[decided], dist64.argmin(1)[decided])
    np.testing.assert_allclose(res.distances.numpy(), dist64.min(1), rtol=0, atol=tol)
    # Even in near-ties, the chosen code is within float noise of the best.
    chosen = dist64[np.arange(n), res.indices.numpy()]
    assert np.all(chosen - dist64.min(1) <= tol)


def test_reference_matches_cdist_argmin():
    gen = torch.Generator().manual_seed(1)
    x, c = torch.randn(300, 32, generator=gen), torch.randn(128, 32, generator=gen)
    res = nearest_codeword(x, c, backend="torch")
    cd = torch.cdist(x.double(), c.double())
    decided = _decided((cd**2).numpy(), 1e-4)
    assert torch.equal(res.indices[decided], cd.argmin(1)[decided])
    torch.testing.assert_close(res.distances, (cd.min(1).values ** 2).float(), rtol=1e-5, atol=1e-4)


def test_reference_exact_on_integer_data():
    x, c = _int_case(torch.Generator().manual_seed(2), 200, 40, 11)
    res = nearest_codeword(x, c, backend="torch")
    dist = _brute_force(x, c)
    # np.argmin also returns the first minimum, so exact ties must agree too.
    assert np.array_equal(res.indices.numpy(), dist.argmin(1))
    assert np.array_equal(res.distances.numpy(), dist.min(1).astype(np.float32))


def test_reference_ties_go_to_lowest_index():
    x, c = _tie_case()
    res = nearest_codeword(x, c, backend="torch")
    assert res.indices.tolist() == [3, 3, 3, 3]
    assert res.distances.tolist() == [0.0, 9.0, 36.0, 0.0]


def test_reference_clamps_distances_of_rows_on_codewords():
    x, c = _on_codewords_case()
    res = nearest_codeword(x, c, backend="torch")
    assert torch.equal(c[res.indices], x)
    assert (res.distances >= 0).all() and (res.distances < 1e-3).all()


@pytest.mark.parametrize("budget", [1, 7, 19 * 5, 10**9])
def test_reference_chunking_does_not_change_results(budget):
    # budget < K forces one row per chunk; 19*5 gives 5-row chunks with a tail.
    x, c = _int_case(torch.Generator().manual_seed(3), 37, 19, 13)
    want = nearest_codeword_torch(x, c, max_block_elements=10**9)
    got = nearest_codeword_torch(x, c, max_block_elements=budget)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])


def test_result_types_and_input_dtypes():
    x, c = _int_case(torch.Generator().manual_seed(4), 20, 6, 5)
    base = nearest_codeword(x, c)
    assert isinstance(base, NearestResult)
    assert base.indices.dtype == torch.int64 and base.distances.dtype == torch.float32
    for dtype in (torch.float64, torch.float16, torch.bfloat16):  # small ints are exact in all
        res = nearest_codeword(x.to(dtype), c.to(dtype))
        assert torch.equal(res.indices, base.indices) and torch.equal(res.distances, base.distances)
    # Non-contiguous inputs (a transposed view) give the same answer.
    res = nearest_codeword(x.t().contiguous().t(), c.t().contiguous().t())
    assert torch.equal(res.indices, base.indices)


def test_empty_input_and_no_grad():
    res = nearest_codeword(torch.empty(0, 8), torch.randn(5, 8))
    assert res.indices.shape == (0,) and res.indices.dtype == torch.int64
    assert res.distances.shape == (0,) and res.distances.dtype == torch.float32
    x = torch.randn(4, 8, requires_grad=True)
    assert not nearest_codeword(x, torch.randn(5, 8)).distances.requires_grad


@pytest.mark.parametrize(
    "x,c,match",
    [
        (torch.randn(8), torch.randn(4, 8), "x must be 2-D"),
        (torch.randn(3, 8), torch.randn(2, 4, 8), "codebook must be 2-D"),
        (torch.randn(3, 8), torch.randn(4, 7), "dimension mismatch"),
        (torch.ones(3, 8, dtype=torch.int64), torch.randn(4, 8), "floating-point"),
        (torch.randn(3, 8), torch.empty(0, 8), "K=0"),
        (torch.randn(3, 0), torch.randn(4, 0), "D=0"),
        (np.zeros((3, 8)), torch.randn(4, 8), "torch.Tensor"),
        (torch.randn(3, 8, device="meta"), torch.randn(4, 8), "one device"),
    ],
)
def test_bad_inputs_raise_value_error(x, c, match):
    with pytest.raises(ValueError, match=match):
        nearest_codeword(x, c)


# --------------------------------------------------------------------------- dispatch


def test_auto_on_cpu_uses_reference():
    x, c = _int_case(torch.Generator().manual_seed(5), 30, 8, 4)
    assert select_backend(x, "auto") == "torch"
    assert select_backend(x) == "torch"
    auto, ref = nearest_codeword(x, c), nearest_codeword(x, c, backend="torch")
    assert torch.equal(auto.indices, ref.indices) and torch.equal(auto.distances, ref.distances)


def test_env_override_and_bad_names(monkeypatch):
    x = torch.randn(3, 4)
    monkeypatch.setenv("DEEPINTEREST_KERNEL", "torch")
    assert select_backend(x, "auto") == "torch"
    monkeypatch.setenv("DEEPINTEREST_KERNEL", "cuda-fast")
    with pytest.raises(ValueError, match="DEEPINTEREST_KERNEL"):
        select_backend(x, "auto")
    assert select_backend(x, "torch") == "torch"  # an explicit backend ignores the env var
    with pytest.raises(ValueError, match="backend must be one of"):
        select_backend(x, "numpy")


def test_forced_triton_on_cpu_without_interpreter_raises(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    monkeypatch.setattr(kernels, "_triton_import_error", lambda: None)  # as if triton imports
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"):
        nearest_codeword(torch.randn(3, 4), torch.randn(2, 4), backend="triton")
    monkeypatch.setenv("DEEPINTEREST_KERNEL", "triton")
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"):
        select_backend(torch.randn(3, 4), "auto")


def test_forced_triton_without_triton_names_the_extra(monkeypatch):
    monkeypatch.setattr(kernels, "_triton_import_error", lambda: "ModuleNotFoundError: No module named 'triton'")
    with pytest.raises(ImportError, match=r"deepinterest\[triton\]"):
        select_backend(torch.randn(3, 4), "triton")


@needs_triton
def test_interpreter_set_after_triton_import_is_explained(monkeypatch):
    from deepinterest.tokenizers.kernels import triton_nearest

    if triton_nearest.interpreter_active():
        pytest.skip("this pytest process was started with TRITON_INTERPRET=1")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    with pytest.raises(RuntimeError, match="imported before"):
        nearest_codeword(torch.randn(3, 4), torch.randn(2, 4), backend="triton")


# --------------------------------------------------------------------------- Triton (interpreter)

_CHILD = """
import sys, torch
from deepinterest.tokenizers.kernels import nearest_codeword, select_backend
cases = torch.load(sys.argv[1])
out = {name: tuple(nearest_codeword(x, c, backend="triton")) for name, (x, c) in cases.items()}
x0 = next(iter(cases.values()))[0]
out["_backends"] = (select_backend(x0, "triton"), select_backend(x0, "auto"))
torch.save(out, sys.argv[2])
"""


@pytest.fixture(scope="module")
def triton_results(tmp_path_factory, run_proc):
    if not HAS_TRITON:
        pytest.skip("triton is not installed (pip install 'deepinterest[triton]')")
    tmp = tmp_path_factory.mktemp("triton")
    cases = _cases()
    torch.save(cases, tmp / "in.pt")
    env = {k: v for k, v in os.environ.items() if k != "DEEPINTEREST_KERNEL"}
    pythonpath = os.pathsep.join(filter(None, [str(REPO / "src"), env.get("PYTHONPATH")]))
    env.update(TRITON_INTERPRET="1", PYTHONPATH=pythonpath)
    proc = run_proc([sys.executable, "-c", _CHILD, str(tmp / "in.pt"), str(tmp / "out.pt")],
                    env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return cases, torch.load(tmp / "out.pt")


def test_triton_interpreter_dispatch(triton_results):
    _, out = triton_results
    # Forced triton runs under the interpreter; auto on CPU still picks the reference.
    assert out["_backends"] == ("triton", "torch")


@pytest.mark.parametrize("name", ["int_37_19_13", "int_130_64_48", "int_1_1_1", "ties"])
def test_triton_matches_reference_exactly_on_exact_data(triton_results, name):
    cases, out = triton_results
    want = nearest_codeword(*cases[name], backend="torch")
    got_idx, got_dist = out[name]
    assert got_idx.dtype == torch.int64 and got_dist.dtype == torch.float32
    assert torch.equal(got_idx, want.indices)
    assert torch.equal(got_dist, want.distances)


def test_triton_ties_go_to_lowest_index(triton_results):
    _, out = triton_results
    assert out["ties"][0].tolist() == [3, 3, 3, 3]


@pytest.mark.parametrize("name", ["rand_37_19_13", "rand_130_64_48"])
def test_triton_matches_reference_on_random_data(triton_results, name):
    cases, out = triton_results
    x, c = cases[name]
    want = nearest_codeword(x, c, backend="torch")
    got_idx, got_dist = out[name]
    decided = torch.from_numpy(_decided(_brute_force(x, c), 1e-4))
    assert decided.float().mean() > 0.9
    assert torch.equal(got_idx[decided], want.indices[decided])
    torch.testing.assert_close(got_dist, want.distances, rtol=1e-5, atol=1e-4)


def test_triton_clamps_distances_of_rows_on_codewords(triton_results):
    cases, out = triton_results
    x, c = cases["on_codewords"]
    idx, dist = out["on_codewords"]
    assert torch.equal(c[idx], x)
    assert (dist >= 0).all() and (dist < 1e-3).all()


def test_triton_empty_input(triton_results):
    _, out = triton_results
    idx, dist = out["empty"]
    assert idx.shape == (0,) and dist.shape == (0,)


# --------------------------------------------------------------------------- Triton (GPU, when present)


@needs_triton
def test_kernel_compiles_for_hopper_without_tensor_cores_in_ieee_mode():
    # Ahead-of-time compile for sm_90 (no GPU needed: the triton wheel ships
    # ptxas). Catches GPU-only codegen errors the interpreter cannot, and checks
    # that input_precision="ieee" really keeps TF32 tensor cores (mma) out.
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from deepinterest.tokenizers.kernels import triton_nearest as tn

    if tn.interpreter_active():
        pytest.skip("this pytest process was started with TRITON_INTERPRET=1: kernels are interpreted")
    ptrs = dict.fromkeys(["x_ptr", "c_ptr", "x_norm_ptr", "c_norm_ptr", "out_dist_ptr"], "*fp32")
    sig = {**ptrs, "out_idx_ptr": "*i64", **dict.fromkeys(["N", "K", "D", "N_BUCKET"], "i32")}
    sig |= dict.fromkeys(["BLOCK_N", "BLOCK_K", "BLOCK_D", "INPUT_PRECISION"], "constexpr")
    ptx = {}
    for precision in ("ieee", "tf32"):
        consts = {"BLOCK_N": 64, "BLOCK_K": 64, "BLOCK_D": 32, "INPUT_PRECISION": precision}
        try:
            compiled = triton.compile(
                ASTSource(tn._KERNEL, sig, constexprs=consts),
                target=GPUTarget("cuda", 90, 32),
                options={"num_warps": 8, "num_stages": 2, "enable_fp_fusion": True},
            )
        except (RuntimeError, FileNotFoundError) as exc:  # no CUDA toolchain in this triton build
            pytest.skip(f"cannot compile for sm_90 here: {exc}")
        ptx[precision] = compiled.asm["ptx"]
    assert "mma" not in ptx["ieee"] and "fma.rn.f32" in ptx["ieee"]
    assert "mma" in ptx["tf32"]  # the check above can see tensor cores when they are used


@needs_cuda
@needs_triton
@pytest.mark.parametrize("n,k,d", [(37, 19, 13), (130, 64, 48), (5000, 1024, 96)])
def test_triton_gpu_matches_reference(n, k, d):
    gen = torch.Generator().manual_seed(n)
    x, c = _int_case(gen, n, k, d)
    assert select_backend(x.cuda()) == "triton"
    got = nearest_codeword(x.cuda(), c.cuda())
    want = nearest_codeword(x, c, backend="torch")
    assert torch.equal(got.indices.cpu(), want.indices) and torch.equal(got.distances.cpu(), want.distances)
    xr, cr = torch.randn(n, d, generator=gen), torch.randn(k, d, generator=gen)
    got, want = nearest_codeword(xr.cuda(), cr.cuda()), nearest_codeword(xr, cr, backend="torch")
    decided = torch.from_numpy(_decided(_brute_force(xr, cr), 1e-4))
    assert torch.equal(got.indices.cpu()[decided], want.indices[decided])


# --------------------------------------------------------------------------- benchmark script


def test_benchmark_script_exits_cleanly_without_gpu(run_proc):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the benchmark would run for real")
    proc = run_proc([sys.executable, str(REPO / "benchmarks" / "gpu_nearest.py"), "--n", "1000",
                     "--k", "64", "--d", "16"], timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "no CUDA GPU" in proc.stdout
