"""Why a checkpoint scores lower on test than on validation: hit rate by how often the
target was a training target, for both splits, and the test figure re-weighted to the
validation split's popularity mix.

    python benchmarks/bench_popularity_gap.py --dataset-dir runs/beauty-mine/dataset \\
        --sids-dir runs/beauty-final/sids-bal --checkpoint runs/beauty-final/b-plain/best

Ranks every validation and every test user with the checkpoint (trie-constrained
beam search, as ``di eval``), buckets the examples by their target's count among
the training targets, and records HR@10 per bucket and split, the share of each
split in each bucket, and ``test re-weighted``: the test HR@10 had the test targets
been as popular as the validation targets (per-bucket test hit rates weighted by
the validation bucket shares). When that closes most of the gap, the test split
is harder mainly because its targets are rarer in training, and a model whose
hits concentrate on popular targets loses more from it.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from deepinterest.config import EvalConfig
from deepinterest.data.splits import leave_one_out
from records import record_and_print
from deepinterest.eval.generative import target_ranks
from deepinterest.train.checkpoints import open_trained

EDGES = (0, 3, 10, 30, 100)  # bucket lower bounds: training-target counts


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset-dir", type=Path, required=True)
    p.add_argument("--sids-dir", type=Path, required=True)
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--max-history", type=int, default=20)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--record", default=None)
    return p.parse_args()


def bucket_of(counts: np.ndarray) -> np.ndarray:
    """Index of each count's bucket (``EDGES``: [0,3), [3,10), ..., [100, inf))."""
    return np.searchsorted(np.asarray(EDGES), counts, side="right") - 1


def split_figures(name: str, hits: np.ndarray, buckets: np.ndarray) -> dict[str, float]:
    out = {f"{name} hr@10": round(float(hits.mean()), 4)}
    for b, low in enumerate(EDGES):
        inside = buckets == b
        label = f"{low}+" if b == len(EDGES) - 1 else f"{low}-{EDGES[b + 1] - 1}"
        out[f"{name} share {label}"] = round(float(inside.mean()), 4)
        out[f"{name} hr@10 {label}"] = round(float(hits[inside].mean()), 4) if inside.any() else 0.0
    return out


def main() -> None:
    args = parse_args()
    started = time.perf_counter()
    torch.set_num_threads(args.threads)
    trained = open_trained(args.dataset_dir, args.sids_dir, args.checkpoint)
    dataset, catalog, model = trained.dataset, trained.catalog, trained.backbone.eval()
    splits = leave_one_out(dataset, max_history=args.max_history)
    counts = Counter(e.target for e in splits.train)
    beam = EvalConfig().beam
    figures: dict[str, float] = {}
    rates = {}
    for name in ("valid", "test"):
        examples = getattr(splits, name)
        ranks = target_ranks(model, catalog, examples, beam=beam, topk=10,
                             max_history=args.max_history)
        hits = (ranks >= 0) & (ranks < 10)
        buckets = bucket_of(np.array([counts[e.target] for e in examples]))
        figures |= split_figures(name, hits, buckets)
        rates[name] = (hits, buckets)
    test_hits, test_buckets = rates["test"]
    valid_share = np.bincount(rates["valid"][1], minlength=len(EDGES)) / len(rates["valid"][1])
    per_bucket = [test_hits[test_buckets == b].mean() if (test_buckets == b).any() else 0.0
                  for b in range(len(EDGES))]
    figures["test re-weighted hr@10"] = round(float(np.dot(valid_share, per_bucket)), 4)
    figures["test / valid"] = round(figures["test hr@10"] / figures["valid hr@10"], 3)
    figures["re-weighted / valid"] = round(figures["test re-weighted hr@10"]
                                           / figures["valid hr@10"], 3)
    record_and_print(name=args.record or f"{dataset.name}-popularity-gap", dataset=dataset.name,
                     method=f"test/validation gap by target popularity ({args.checkpoint})",
                     figures=figures, seconds=time.perf_counter() - started,
                     notes=f"every validation and test user; beam {beam}, top 10; buckets by the "
                     f"target's count among the {len(splits.train):,} training targets")


if __name__ == "__main__":
    main()
