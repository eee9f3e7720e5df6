"""Benchmark: fused Triton nearest-codeword kernel vs the PyTorch reference vs torch.cdist.

    python benchmarks/gpu_nearest.py                      # 1,000,000 x 4096 codes x 256 dims
    python benchmarks/gpu_nearest.py --n 200000 --k 1024 --d 128 --repeats 10

What it measures, on one CUDA GPU, in the same run (as everywhere in
docs/results.md, a speed claim is a ratio against what a user would otherwise
write, measured in the same run):

- ``triton``: :func:`nearest_codeword_triton` (autotuned on the first call,
  which is excluded from the timings and reported separately);
- ``reference``: the chunked matmul + argmin of ``reference.py`` on the GPU;
- ``cdist``: ``torch.cdist(x, c).argmin(1)``, the one-liner, which
  materialises the full N x K matrix (16 GB at the default size; reported as
  out of memory if it does not fit).

Each is warmed up, then timed ``--repeats`` times with ``torch.cuda.synchronize``
around the call; median and min milliseconds, the ratios of medians, peak
memory, and the fraction of indices on which the methods agree are printed.
On random Gaussian data a few rows have near-ties whose argmin legitimately
differs between summation orders, so agreement is close to, not exactly, 1.

Without a CUDA GPU it prints a message and exits 0 (so CI can run it).
Writes a JSON record through :func:`records.write_record` unless
``--no-record``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

NO_GPU_MESSAGE = "no CUDA GPU available: nothing to benchmark (this script times the Triton kernel on CUDA); exiting"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=1_000_000, help="vectors to quantize")
    p.add_argument("--k", type=int, default=4096, help="codewords")
    p.add_argument("--d", type=int, default=256, help="dimensions")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per method")
    p.add_argument("--warmup", type=int, default=2, help="untimed runs per method (after the first call)")
    p.add_argument("--precision", default="ieee", choices=["ieee", "tf32", "tf32x3"],
                   help="tl.dot input precision; only 'ieee' matches the reference (production setting)")
    p.add_argument("--skip-cdist", action="store_true", help="do not run torch.cdist (it needs N*K*4 bytes)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-record", action="store_true", help="do not write a results record")
    return p.parse_args(argv)


def timed(fn, *, warmup: int, repeats: int) -> dict:
    """Median/min wall ms of fn() over repeats, bracketed by CUDA syncs, plus peak memory."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    times, out = [], None
    for _ in range(repeats):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = fn()
        torch.cuda.synchronize()
        times.append((time.perf_counter() - t0) * 1e3)
    peak_gb = (torch.cuda.max_memory_allocated() - base) / 2**30
    return {"median_ms": statistics.median(times), "min_ms": min(times), "peak_gb": peak_gb, "indices": out}


def make_methods(x: torch.Tensor, c: torch.Tensor, args: argparse.Namespace) -> dict:
    from deepinterest.tokenizers.kernels.reference import nearest_codeword_torch
    from deepinterest.tokenizers.kernels.triton_nearest import nearest_codeword_triton

    methods = {
        "triton": lambda: nearest_codeword_triton(x, c, input_precision=args.precision)[0],
        "reference": lambda: nearest_codeword_torch(x, c)[0],
    }
    if not args.skip_cdist:
        methods["cdist"] = lambda: torch.cdist(x, c).argmin(1)
    return methods


def run_all(methods: dict, args: argparse.Namespace) -> dict:
    results = {}
    for name, fn in methods.items():
        t0 = time.perf_counter()
        try:
            fn()  # first call: compile / autotune / allocator growth
            torch.cuda.synchronize()
            first_ms = (time.perf_counter() - t0) * 1e3
            results[name] = timed(fn, warmup=args.warmup, repeats=args.repeats) | {"first_call_ms": first_ms}
        except torch.cuda.OutOfMemoryError:
            print(f"{name}: out of GPU memory at this size (skipped)")
        torch.cuda.empty_cache()
    return results


def report(results: dict, args: argparse.Namespace) -> dict:
    """Print a table and return the figures for the record."""
    print(f"\nN={args.n:,} K={args.k} D={args.d} precision={args.precision} repeats={args.repeats}")
    print(f"{'method':<10} {'median ms':>10} {'min ms':>10} {'first ms':>10} {'peak GB':>8}")
    figures: dict = {"n": args.n, "k": args.k, "d": args.d, "precision": args.precision}
    for name, r in results.items():
        ms = f"{r['median_ms']:>10.2f} {r['min_ms']:>10.2f} {r['first_call_ms']:>10.1f}"
        print(f"{name:<10} {ms} {r['peak_gb']:>8.2f}")
        figures[f"{name}_median_ms"] = round(r["median_ms"], 3)
        figures[f"{name}_peak_gb"] = round(r["peak_gb"], 3)
    if "triton" not in results:
        return figures
    tri = results["triton"]
    for other in ("reference", "cdist"):
        if other in results:
            ratio = results[other]["median_ms"] / tri["median_ms"]
            agree = (results[other]["indices"] == tri["indices"]).float().mean().item()
            print(f"speedup of triton over {other}: {ratio:.2f}x (median {other} / median triton); "
                  f"indices agree on {agree:.6f} of rows")
            figures[f"speedup_vs_{other}"] = round(ratio, 3)
            figures[f"agreement_vs_{other}"] = agree
    return figures


def write_record(figures: dict, seconds: float, args: argparse.Namespace) -> None:
    from records import write_record as _write

    gpu = torch.cuda.get_device_name(0)
    path = _write(
        name=f"gpu_nearest_{args.n}x{args.k}x{args.d}_{args.precision}",
        dataset="synthetic-gaussian",
        method="nearest_codeword: triton vs reference vs torch.cdist",
        figures=figures,
        seconds=seconds,
        notes=f"GPU: {gpu}; first call (autotune/compile) excluded from timings",
    )
    print(f"record written to {path}")  # report() has printed the figures already


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not torch.cuda.is_available():
        print(NO_GPU_MESSAGE)
        return 0
    try:
        import triton  # noqa: F401
    except ImportError:
        print("triton is not installed: pip install 'deepinterest[triton]'", file=sys.stderr)
        return 1
    start = time.perf_counter()
    gen = torch.Generator(device="cuda").manual_seed(args.seed)
    x = torch.randn(args.n, args.d, device="cuda", generator=gen)
    c = torch.randn(args.k, args.d, device="cuda", generator=gen)
    print(f"device: {torch.cuda.get_device_name(0)}")
    results = run_all(make_methods(x, c, args), args)
    figures = report(results, args)
    if not args.no_record:
        write_record(figures, time.perf_counter() - start, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
