"""`di tokenize` on a dataset, recorded: SID uniqueness, collisions, usage, errors, seconds.

    python benchmarks/bench_tokenize.py --source ../shared/data/amazon-beauty \\
        --dataset amazon-beauty [--balanced]

Embeddings come from the on-disk cache when present (the record says how
long embedding took in this run).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from deepinterest.config import DataConfig, TokenizeConfig
from deepinterest.data.prepare import prepare_dataset
from records import record_and_print
from deepinterest.tokenizers.stage import tokenize_items

KEYS = ("items", "unique_sids", "collision_rate_before_suffix", "colliding_groups",
        "max_group_size", "relative_mse", "reconstruction_mse", "fit_seconds", "embed_seconds")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", default="default")
    parser.add_argument("--dataset", default="default")
    parser.add_argument("--quantizer", default="rkmeans")
    parser.add_argument("--balanced", action="store_true")
    args = parser.parse_args()
    start = time.perf_counter()
    cfg = TokenizeConfig(quantizer=args.quantizer, balanced_last_level=args.balanced)
    with tempfile.TemporaryDirectory() as tmp:
        prepare_dataset(DataConfig(source=args.source), Path(tmp) / "dataset")
        tokenize_items(cfg, Path(tmp) / "dataset", Path(tmp) / "sids", progress=False)
        stats = json.loads((Path(tmp) / "sids" / "stats.json").read_text())
    figures = {k: stats[k] for k in KEYS}
    for level, (use, ppl) in enumerate(zip(stats["usage"], stats["perplexity"]), start=1):
        figures[f"usage level {level}"] = use
        figures[f"perplexity level {level}"] = ppl
    if args.balanced:
        figures["collision rate before balancing"] = stats["collision_rate_before_balancing"]
        figures["relative_mse before balancing"] = stats["relative_mse_before_balancing"]
    suffix = "-balanced" if args.balanced else ""
    name = f"{args.dataset}-tokenize-{args.quantizer}{suffix}"
    method = f"di tokenize: {args.quantizer} {stats['levels']}x{stats['codebook_sizes'][0]}"
    method += " + balanced last level" if args.balanced else ""
    record_and_print(name=name, dataset=args.dataset, method=method, figures=figures,
                     seconds=time.perf_counter() - start,
                     notes="relative_mse is centred (1.0 = predicting the mean vector)")


if __name__ == "__main__":
    main()
