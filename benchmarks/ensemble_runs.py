"""Several trained runs' recommendations merged into one list (inference-time
ensembling, ``deepinterest.eval.ensemble``), scored on every user of a split.

    python benchmarks/ensemble_runs.py \\
        --run runs/a/dataset runs/a/sids runs/a/sft/last \\
        --run runs/b/dataset runs/b/sids runs/b/sft/last \\
        --rule probability --split valid --record amazon-beauty-ensemble-ab-valid

Each run is its dataset artifact, its sids artifact and a checkpoint
(provenance checked); the runs must hold the same users, items and targets.
Each model's beam keeps ``--candidates`` items for the merge; the merged list
is cut to 10. Every model alone is scored too, from the same beams, and with
``--pairs`` every pair of them (NDCG@10).
"""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path

import torch

from deepinterest.data.splits import leave_one_out
from deepinterest.eval.ensemble import RULES, fuse
from deepinterest.eval.generative import Recommendations, ranks_in, recommend
from deepinterest.eval.metrics import metrics_from_ranks
from deepinterest.train.checkpoints import open_trained
from records import record_and_print

METRICS = ("hr@5", "ndcg@5", "hr@10", "ndcg@10")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", nargs=3, type=Path, action="append", required=True,
                   metavar=("DATASET", "SIDS", "CHECKPOINT"), help="one trained run (repeat)")
    p.add_argument("--weights", type=float, nargs="+", default=None)
    p.add_argument("--rule", choices=RULES, nargs="+", default=list(RULES))
    p.add_argument("--pairs", action="store_true",
                   help="also score every pair of runs (equal weights, first rule)")
    p.add_argument("--split", choices=["valid", "test"], default="valid")
    p.add_argument("--beam", type=int, default=20)
    p.add_argument("--candidates", type=int, default=20, help="items each model hands over")
    p.add_argument("--max-history", type=int, default=20)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--record", default=None)
    p.add_argument("--results-dir", type=Path, default=None)
    return p.parse_args()


def run_lists(paths: list[Path], split: str, args) -> tuple[Recommendations, list, list]:
    """The run's beam on ``split`` (``args``: beam, candidates, max_history), the
    (user, target) ids ranked and the item ids."""
    trained = open_trained(*paths)
    examples = getattr(leave_one_out(trained.dataset, max_history=args.max_history), split)
    recs = recommend(trained.backbone.eval(), trained.catalog, [e.history for e in examples],
                     users=[e.user for e in examples], beam=args.beam, topk=args.candidates,
                     max_history=args.max_history)
    ds = trained.dataset
    return (recs, [(ds.users[e.user].id, ds.items[e.target].id) for e in examples],
            [it.id for it in ds.items])


def scores(recs: Recommendations, targets: list[int]) -> dict[str, float]:
    return metrics_from_ranks(ranks_in(recs, targets, topk=10), (5, 10)).values


def main() -> None:
    args = parse_args()
    started = time.perf_counter()
    torch.set_num_threads(args.threads)
    lists, first_ids, first_items = [], None, None
    for paths in args.run:
        recs, ids, items = run_lists(paths, args.split, args)
        if first_ids is None:
            first_ids, first_items = ids, items
        elif ids != first_ids or items != first_items:
            raise SystemExit(f"{paths[0]}: another dataset than {args.run[0][0]}")
        lists.append(recs)
    position = {item: pos for pos, item in enumerate(first_items)}
    targets = [position[t] for _, t in first_ids]
    figures: dict[str, float] = {}
    for n, recs in enumerate(lists):
        figures |= {f"model {n + 1} {k}": round(v, 4) for k, v in scores(recs, targets).items()
                    if k in METRICS}
    for rule in args.rule:
        fused = fuse(lists, weights=args.weights, rule=rule, topk=10)
        figures |= {f"{rule} {k}": round(v, 4) for k, v in scores(fused, targets).items()
                    if k in METRICS}
    if args.pairs and len(lists) > 2:
        for a, b in itertools.combinations(range(len(lists)), 2):
            fused = fuse([lists[a], lists[b]], rule=args.rule[0], topk=10)
            figures |= {f"models {a + 1}+{b + 1} {k}": round(v, 4)
                        for k, v in scores(fused, targets).items() if k == "ndcg@10"}
    figures["users"] = len(targets)
    record_and_print(
        name=args.record or "ensemble-runs", dataset=str(args.run[0][0]),
        method=f"ensemble on {args.split} of " + ", ".join(str(p[2]) for p in args.run),
        figures=figures, seconds=time.perf_counter() - started, directory=args.results_dir,
        notes=f"every {args.split} user; each model's beam {args.beam} hands over "
        f"{args.candidates} items; weights {args.weights or 'equal'}")


if __name__ == "__main__":
    main()
