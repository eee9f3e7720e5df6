"""Does a wider beam rank better? Validation HR/NDCG@5/10 of one checkpoint at several
beam widths, every validation user, with the time each search took.

    python benchmarks/bench_beam.py --dataset-dir runs/beauty-mine/dataset \\
        --sids-dir runs/beauty-final/sids-bal --checkpoint runs/beauty-final/b-plain/best \\
        --beams 10,20,40

Beam search keeps the ``beam`` most probable SID prefixes at each step, so a
wider beam finds item sequences the model scores higher that a narrow one cut
early; whether those rank the held-out item higher is an empirical question.
Only the validation split is read (a beam width is a setting to choose there),
unless ``--split test`` asks for the test metrics of a checkpoint that validation
has already chosen (e.g. the last epoch of a run whose own selection read a
validation subset).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from deepinterest.data.splits import leave_one_out
from records import record_and_print
from deepinterest.eval.generative import evaluate_generative
from deepinterest.train.checkpoints import open_trained


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset-dir", type=Path, required=True)
    parser.add_argument("--sids-dir", type=Path, required=True)
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--beams", default="10,20,40", help="comma-separated beam widths (>= 10)")
    parser.add_argument("--split", choices=["valid", "test"], default="valid",
                        help="the users ranked (test: only for a checkpoint validation chose)")
    parser.add_argument("--max-history", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--record", default=None)
    parser.add_argument("--results-dir", type=Path, default=None,
                        help="where the record goes (default: benchmarks/results)")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    started = time.perf_counter()
    torch.set_num_threads(args.threads)
    beams = [int(b) for b in args.beams.split(",")]
    if min(beams) < 10:
        raise SystemExit("every beam must be at least 10 (the lists are ranked to 10)")
    trained = open_trained(args.dataset_dir, args.sids_dir, args.checkpoint)
    dataset, catalog, model = trained.dataset, trained.catalog, trained.backbone.eval()
    examples = getattr(leave_one_out(dataset, max_history=args.max_history), args.split)
    figures: dict[str, float] = {}
    for beam in beams:
        begun = time.perf_counter()
        metrics = evaluate_generative(model, catalog, examples, beam=beam, topk=10, ks=(5, 10),
                                      max_history=args.max_history)
        seconds = time.perf_counter() - begun
        for name, value in metrics.values.items():
            figures[f"beam {beam} {args.split} {name}"] = round(float(value), 4)
        figures[f"beam {beam} seconds"] = round(seconds, 1)
        print(f"beam {beam}: {metrics.values} in {seconds:.1f} s")
    record_and_print(name=args.record or f"{dataset.name}-beam-width", dataset=dataset.name,
                     method=f"{args.split} by beam width ({args.checkpoint})", figures=figures,
                     seconds=time.perf_counter() - started,
                     directory=args.results_dir,
                     notes=f"all {len(examples):,} {args.split} users, top 10, one search per "
                     "width")


if __name__ == "__main__":
    main()
