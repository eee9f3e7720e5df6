"""Residual k-means against faiss (and the RQ-VAE) on one embedding matrix.

    python benchmarks/bench_rkmeans.py --embeddings benchmarks/.cache/beauty-minilm.npy
    python benchmarks/bench_rkmeans.py --synthetic 12101,384        # quick run, no records

Methods, all fitting ``--levels`` codebooks of ``--codebook-size`` on the same
vectors in one process:

- ``ours-torch`` / ``ours-auto``: :class:`deepinterest.tokenizers.rkmeans.ResidualKMeans`
  (greedy k-means++ init, Lloyd with early stop, torch backend / auto backend);
  ours-torch also reports its figures after ``balanced_last_level``.
- ``ours-faiss-lloyd``: our init, faiss's Lloyd (``backend="faiss"``).
- ``faiss-kmeans``: ``faiss.Kmeans(niter=25)`` per level on the residuals of the
  level before, what MiniOneRec does. faiss initialises with random points,
  not k-means++.
- ``faiss-rq``: ``faiss.ResidualQuantizer`` (beam search, ``max_beam_size`` 5),
  a stronger but slower encoder; only for power-of-two codebook sizes.
- ``rqvae``: :class:`deepinterest.tokenizers.rqvae.RQVAE` with a fixed epoch budget
  (its MSE is in the input space, after the decoder).

The fast methods run ``--repeats`` rounds, interleaved (one of each per round),
so that load from other processes hits all of them alike; the table reports
the fastest round of each and the median of the per-round ratios ours/faiss.
Relative MSE is the squared error over the squared norm of the *centred*
vectors (``deepinterest.tokenizers.base.reconstruction_errors``, the figure
``di tokenize`` reports in stats.json, docs/tokenizers.md); ``rel_mse_raw``
divides by the raw squared norm instead (for unit-norm embeddings, the mean
squared error per item), the convention of errors quoted without centring.

With ``--embeddings``, one result record per method is written with
:func:`records.write_record` (``--no-record`` to skip);
synthetic runs write none.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from records import write_record
from deepinterest.tokenizers.base import code_stats, reconstruction_errors
from deepinterest.tokenizers.collisions import balanced_last_level, collision_stats
from deepinterest.tokenizers.rkmeans import ResidualKMeans
from deepinterest.tokenizers.rqvae import RQVAE

# A method fits on x and returns (codes [N, L] int64, reconstruction [N, D] float32).
Method = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--embeddings", type=Path, help="float32 [N, D] .npy file")
    source.add_argument("--synthetic", help="N,D: clustered random vectors, for a quick run")
    parser.add_argument("--dataset", default="amazon-beauty", help="dataset name for the records")
    parser.add_argument("--name-prefix", default=None,
                        help="record name prefix (default: <dataset>-rkmeans)")
    parser.add_argument("--levels", type=int, default=3)
    parser.add_argument("--codebook-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3,
                        help="interleaved rounds of the fast methods")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rqvae-epochs", type=int, default=50, help="0 skips the RQ-VAE")
    parser.add_argument("--skip-faiss-rq", action="store_true",
                        help="skip faiss ResidualQuantizer (slow)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch and faiss threads (default: leave both libraries' defaults)")
    parser.add_argument("--no-record", action="store_true")
    return parser.parse_args(argv)


def load_vectors(args: argparse.Namespace) -> tuple[np.ndarray, str]:
    """The embedding matrix and a dataset label."""
    if args.embeddings:
        return np.ascontiguousarray(np.load(args.embeddings), dtype=np.float32), args.dataset
    n, d = (int(v) for v in args.synthetic.split(","))
    rng = np.random.default_rng(args.seed)
    centres = rng.normal(size=(max(n // 25, 2), d)).astype(np.float32)
    x = centres[rng.integers(0, len(centres), n)] + 0.7 * rng.normal(size=(n, d)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)  # unit norm, like sentence embeddings
    return x.astype(np.float32), f"synthetic-{n}x{d}"


def ours(backend: str, seed: int, levels: int, k: int) -> Method:
    def run(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rk = ResidualKMeans(levels=levels, codebook_size=k, backend=backend)
        rk.fit(torch.from_numpy(x), seed=seed)
        quantized = rk.quantize(torch.from_numpy(x))
        return quantized.codes.numpy(), quantized.quantized.numpy()
    return run


def faiss_kmeans(seed: int, levels: int, k: int) -> Method:
    import faiss

    def run(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        residual, codes = x.copy(), []
        for level in range(levels):
            km = faiss.Kmeans(x.shape[1], k, niter=25, seed=seed * 1_000_003 + level)
            km.train(residual)
            index = km.index.search(residual, 1)[1][:, 0]
            residual = residual - km.centroids[index]
            codes.append(index)
        return np.stack(codes, axis=1), x - residual
    return run


def faiss_rq(levels: int, k: int) -> Method:
    import faiss

    def run(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rq = faiss.ResidualQuantizer(x.shape[1], levels, int(np.log2(k)))
        rq.max_beam_size = 5
        rq.train(x)
        packed = rq.compute_codes(x)
        return _unpack_rq(rq, packed, levels), rq.decode(packed)
    return run


def _unpack_rq(rq, packed: np.ndarray, levels: int) -> np.ndarray:
    """Per-level codes from faiss's packed little-endian bit strings."""
    nbits = rq.nbits.at(0)
    bits = np.unpackbits(packed, axis=1, bitorder="little")[:, : levels * nbits]
    bits = bits.reshape(-1, levels, nbits)
    return (bits.astype(np.int64) << np.arange(nbits)).sum(axis=2)


def rqvae(seed: int, levels: int, k: int, epochs: int) -> Method:
    def run(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        model = RQVAE(levels=levels, codebook_size=k, epochs=epochs, patience=epochs)
        model.fit(torch.from_numpy(x), seed=seed)
        quantized = model.quantize(torch.from_numpy(x))
        return quantized.codes.numpy(), quantized.quantized.numpy()
    return run


def balanced_figures(x: np.ndarray, seed: int, levels: int, k: int) -> dict:
    """Collision rate and relative MSE of ours-torch after ``balanced_last_level``."""
    vectors = torch.from_numpy(x)
    rk = ResidualKMeans(levels=levels, codebook_size=k, backend="torch")
    rk.fit(vectors, seed=seed)  # deterministic: the same model as the timed runs
    quantized = rk.quantize(vectors)
    start = time.perf_counter()
    balanced = balanced_last_level(quantized.last_input, rk.codebooks[-1], quantized.codes)
    seconds = time.perf_counter() - start
    approx = rk.decode(balanced.codes).numpy()
    after = figures(x, balanced.codes.numpy(), approx, k)
    return {"balanced_collision_rate": after["collision_rate"],
            "balanced_relative_mse": after["relative_mse"],
            "balanced_moved_items": balanced.moved, "balanced_seconds": round(seconds, 3)}


def timed(method: Method, x: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Seconds of one fit (including encoding the training set) and its outputs."""
    start = time.perf_counter()
    codes, approx = method(x)
    return time.perf_counter() - start, codes, approx


def figures(x: np.ndarray, codes: np.ndarray, approx: np.ndarray, k: int) -> dict:
    """Quality figures of one method's codes and reconstruction."""
    mse, relative = reconstruction_errors(torch.from_numpy(x), torch.from_numpy(approx))
    stats = code_stats(torch.from_numpy(codes), (k,) * codes.shape[1])
    collisions = collision_stats(torch.from_numpy(codes))
    return {
        "relative_mse": relative,
        "rel_mse_raw": mse * x.size / float((x.astype(np.float64) ** 2).sum()),
        "mse": mse,
        "collision_rate": collisions.collision_rate,
        "colliding_items": collisions.colliding_items,
        "max_group_size": collisions.max_group_size,
        "usage": [round(u, 4) for u in stats.usage],
        "perplexity": [round(p, 1) for p in stats.perplexity],
    }


def run_fast(methods: dict[str, Method], x: np.ndarray, repeats: int) -> dict[str, dict]:
    """Interleaved rounds; keeps every round's seconds and the last outputs."""
    results: dict[str, dict] = {name: {"times": []} for name in methods}
    for round_ in range(repeats):
        for name, method in methods.items():
            seconds, codes, approx = timed(method, x)
            results[name].update(codes=codes, approx=approx)
            results[name]["times"].append(seconds)
            print(f"  round {round_ + 1}: {name:18s} {seconds:7.3f} s", file=sys.stderr)
    return results


def summarise(results: dict[str, dict], x: np.ndarray, k: int) -> None:
    """Add figures, best time and the paired ratio to faiss-kmeans to every method."""
    reference = results.get("faiss-kmeans")
    for result in results.values():
        result["figures"] = figures(x, result["codes"], result["approx"], k)
        result["seconds"] = min(result["times"])
        result["figures"]["seconds"] = round(result["seconds"], 4)
        result["figures"]["seconds_all_rounds"] = [round(t, 4) for t in result["times"]]
        if reference is not None and len(result["times"]) == len(reference["times"]):
            ratios = [t / r for t, r in zip(result["times"], reference["times"])]
            result["figures"]["time_ratio_to_faiss_kmeans"] = round(statistics.median(ratios), 3)


def print_table(results: dict[str, dict]) -> None:
    header = (f"{'method':18s} {'seconds':>8s} {'ratio':>6s} {'rel_mse':>8s} {'raw':>7s} "
              f"{'collide':>8s} {'usage':>6s}")
    print(header)
    print("-" * len(header))
    for name, result in results.items():
        fig = result["figures"]
        ratio = fig.get("time_ratio_to_faiss_kmeans")
        print(
            f"{name:18s} {result['seconds']:8.3f} {'' if ratio is None else f'{ratio:.2f}':>6s} "
            f"{fig['relative_mse']:8.4f} {fig['rel_mse_raw']:7.4f} {fig['collision_rate']:8.4f} "
            f"{np.mean(fig['usage']):6.3f}"
        )


NOTES = {
    "ours-torch": "greedy k-means++ init (pool 4096, 3 trials), Lloyd until the relative "
                  "inertia decrease < 5e-4 or 25 updates; torch backend",
    "ours-auto": "backend='auto' (on CPU: torch, see kmeans.py)",
    "ours-faiss-lloyd": "our greedy k-means++ init, faiss Lloyd (25 iterations, no early stop)",
    "faiss-kmeans": "faiss.Kmeans(niter=25) per level on residuals, faiss's random init",
    "faiss-rq": "faiss.ResidualQuantizer, max_beam_size 5",
    "rqvae": "RQVAE defaults (512-256-128, latent 32), fixed epoch budget, no early stop",
}


def record(results: dict[str, dict], args: argparse.Namespace, dataset: str, x: np.ndarray) -> None:
    prefix = args.name_prefix or f"{dataset.removeprefix('amazon-')}-rkmeans"
    load = args.load_average
    for name, result in results.items():
        fig = {"items": x.shape[0], "dim": x.shape[1], "levels": args.levels,
               "codebook_size": args.codebook_size, **result["figures"]}
        note = (NOTES[name] + f"; seconds = fastest of {len(result['times'])} interleaved "
                f"round(s); 1-min load average {load} at the start (other jobs share the cores)")
        path = write_record(name=f"{prefix}-{name}", dataset=dataset, method=name, figures=fig,
                            seconds=result["seconds"], notes=note)
        print(f"wrote {path}", file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    x, dataset = load_vectors(args)
    args.load_average = round(os.getloadavg()[0], 2)
    if args.threads:
        import faiss

        torch.set_num_threads(args.threads)
        faiss.omp_set_num_threads(args.threads)
    levels, k, seed = args.levels, args.codebook_size, args.seed
    print(f"{dataset}: {x.shape[0]} x {x.shape[1]}, {levels} levels x {k}, "
          f"torch threads {torch.get_num_threads()}")
    fast: dict[str, Method] = {
        "ours-torch": ours("torch", seed, levels, k),
        "faiss-kmeans": faiss_kmeans(seed, levels, k),
        "ours-auto": ours("auto", seed, levels, k),
        "ours-faiss-lloyd": ours("faiss", seed, levels, k),
    }
    results = run_fast(fast, x, args.repeats)
    slow: dict[str, Method] = {}
    if not args.skip_faiss_rq and k & (k - 1) == 0:
        slow["faiss-rq"] = faiss_rq(levels, k)
    if args.rqvae_epochs > 0:
        slow["rqvae"] = rqvae(seed, levels, k, args.rqvae_epochs)
    results.update(run_fast(slow, x, 1))
    summarise(results, x, k)
    results["ours-torch"]["figures"].update(balanced_figures(x, seed, levels, k))
    print_table(results)
    if args.embeddings and not args.no_record:
        record(results, args, dataset, x)


if __name__ == "__main__":
    main()
