"""Is run B better than run A? Both checkpoints ranked on every user of one split, with a
paired bootstrap interval of the difference (``deepinterest.eval.compare``).

    python benchmarks/compare_runs.py \\
        --a runs/ablation-beauty/plain/dataset runs/ablation-beauty/plain/sids \\
            runs/ablation-beauty/plain/sft/best \\
        --b runs/ablation-beauty/interests-x/dataset runs/ablation-beauty/interests-x/sids \\
            runs/ablation-beauty/interests-x/sft/best \\
        --split test --record amazon-beauty-compare-x

Each run is given as its dataset artifact, its sids artifact and a checkpoint
(provenance is checked). The two datasets must hold the same users and
targets (runs of one config prepare the same dataset). ``--split test`` is
for checkpoints validation has already chosen; nothing here selects.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from deepinterest.eval.compare import paired_bootstrap
from deepinterest.eval.generative import ranks_in
# benchmarks/ensemble_runs.py: the script's own folder is first on sys.path
from ensemble_runs import run_lists
from records import record_and_print

METRICS = ("hr@5", "ndcg@5", "hr@10", "ndcg@10")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for side in ("a", "b"):
        p.add_argument(f"--{side}", nargs=3, type=Path, required=True,
                       metavar=("DATASET", "SIDS", "CHECKPOINT"), help=f"run {side.upper()}")
    p.add_argument("--split", choices=["valid", "test"], default="valid")
    p.add_argument("--beam", type=int, default=20)
    p.add_argument("--max-history", type=int, default=20)
    p.add_argument("--samples", type=int, default=2000, help="bootstrap samples")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--record", default=None)
    p.add_argument("--results-dir", type=Path, default=None)
    return p.parse_args()


def ranks_of(paths: list[Path], split: str, args) -> tuple[np.ndarray, list[tuple[str, str]]]:
    """The checkpoint's target ranks on ``split`` and the (user, target) ids ranked."""
    recs, ids, items = run_lists(paths, split, argparse.Namespace(
        beam=args.beam, candidates=10, max_history=args.max_history))
    position = {item: n for n, item in enumerate(items)}
    return ranks_in(recs, [position[target] for _, target in ids]), ids


def main() -> None:
    args = parse_args()
    started = time.perf_counter()
    torch.set_num_threads(args.threads)
    ranks_a, users_a = ranks_of(args.a, args.split, args)
    ranks_b, users_b = ranks_of(args.b, args.split, args)
    if users_a != users_b:
        raise SystemExit("the two runs rank different users or targets: compare runs of "
                         "one dataset")
    figures: dict[str, float] = {}
    for metric in METRICS:
        c = paired_bootstrap(ranks_a, ranks_b, metric, samples=args.samples)
        figures |= {f"A {metric}": round(c.a, 4), f"B {metric}": round(c.b, 4),
                    f"B - A {metric}": round(c.difference, 4),
                    f"B - A {metric} low": round(c.low, 4),
                    f"B - A {metric} high": round(c.high, 4),
                    f"B / A - 1 {metric}": round(c.relative, 4),
                    f"P(B > A) {metric}": round(c.b_better, 4)}
    figures["users"] = len(users_a)
    record_and_print(
        name=args.record or "compare-runs", dataset=str(args.a[0]),
        method=f"paired bootstrap on {args.split}: A = {args.a[2]}, B = {args.b[2]}",
        figures=figures, seconds=time.perf_counter() - started, directory=args.results_dir,
        notes=f"every {args.split} user, beam {args.beam}, top 10; 95% percentile interval "
        f"of B - A over {args.samples} resamples of users (seed 0)")


if __name__ == "__main__":
    main()
