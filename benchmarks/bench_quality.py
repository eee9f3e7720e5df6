"""Item quality q and reward labels of an interests artifact, as a result record.

    python benchmarks/bench_quality.py runs/ablation-beauty/plain/interests \\
        --dataset amazon-beauty --name amazon-beauty-quality-embedding-heuristic

The paper's item quality is q = sum(c_j l_j) / sum(c_j) over an item's
descriptors (confidence c, reward label l). A q that is 1 for nearly every
item makes the reward's quality term a constant; a labeler that rejects most
descriptors of a miner known to be right (the embedded dataset's oracle)
labels grounding in the item text, not deep interests. Records the share of
positive labels per labeler, the distribution of q, and how many items have
no descriptors.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import Counter
from pathlib import Path

from records import record_and_print
from deepinterest.schemas.interests import read_items


def quality_figures(rows: list[dict]) -> dict[str, float | int]:
    """q's distribution and the labels' positive share, per labeler."""
    qs = sorted(row["quality"] for row in rows)
    labels = Counter((d["labeler"], d["label"]) for row in rows for d in row["descriptors"])
    figures: dict[str, float | int] = {
        "items": len(rows), "items without descriptors": sum(not r["descriptors"] for r in rows),
        "descriptors": sum(labels.values()), "mean q": round(statistics.fmean(qs), 4),
        "share of items with q = 1": round(sum(q == 1 for q in qs) / len(qs), 4),
        "share of items with q = 0": round(sum(q == 0 for q in qs) / len(qs), 4),
        "q 10th percentile": qs[len(qs) // 10], "q median": qs[len(qs) // 2]}
    for labeler in sorted({name for name, _ in labels}):
        total = labels[(labeler, 0)] + labels[(labeler, 1)]
        figures[f"positive share ({labeler})"] = round(labels[(labeler, 1)] / total, 4)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("interests", type=Path, help="an interests artifact folder")
    parser.add_argument("--dataset", required=True, help="dataset label of the record")
    parser.add_argument("--name", required=True, help="record name")
    parser.add_argument("--method", default="item quality q and reward labels")
    parser.add_argument("--made-by", default="", help="the command that wrote the artifact "
                        "(recorded in the notes)")
    parser.add_argument("--results-dir", type=Path, default=None)
    args = parser.parse_args()
    start = time.perf_counter()
    rows = read_items(args.interests)
    record_and_print(name=args.name, dataset=args.dataset, method=args.method,
                     figures=quality_figures(rows), seconds=time.perf_counter() - start,
                     notes=f"interests artifact {args.interests}"
                     + (f", written by: {args.made_by}" if args.made_by else ""),
                     directory=args.results_dir)


if __name__ == "__main__":
    main()
