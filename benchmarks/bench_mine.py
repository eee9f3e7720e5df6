"""`di mine` on a dataset, recorded: what each miner cost and what it found.

    python benchmarks/bench_mine.py --source ../shared/data/amazon-beauty \\
        --dataset amazon-beauty --out runs/beauty-mine [--config miners.toml]

Runs the mine stage (``[mine]`` of ``--config``, else the default: the
embedding miner, vote ensemble, heuristic labels) into ``OUT/interests``
(rebuilt) and writes one result record per miner with items, failures,
tokens, tokens per second, dollars, latency, descriptors per item and the
positive-label rate, plus the artifact's seconds and mean item quality, and
the planted-motivation recovery where the dataset has one. Answers and
embeddings come from their caches when present; set ``DEEPINTEREST_CACHE``
to an empty folder for a cold run.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from deepinterest.config import DataConfig, RunConfig, load_config
from deepinterest.data.prepare import prepare_dataset
from deepinterest.miners.stage import REPORT_FILE, mine_stage
from records import record_and_print

STATS = ("items", "answered", "failed", "cached", "tokens_in", "tokens_out", "dollars",
         "latency_median_s", "latency_p95_s", "descriptors_per_item", "agreement",
         "positive_label_rate")


def figures_of(name: str, stats: dict, report: dict, seconds: float) -> dict:
    figures = {key.replace("_", " "): stats[key] for key in STATS if stats.get(key) is not None}
    figures["stage seconds"] = round(seconds, 1)
    figures["tokens per second"] = round((stats["tokens_in"] + stats["tokens_out"]) / seconds, 1)
    figures["mean item quality"] = report["mean_quality"]
    for source in (name, "ensemble"):
        score = report.get("recovery", {}).get(source)
        if score:
            figures[f"{source} recall"] = score["recall"]
            figures[f"{source} precision"] = score["precision"]
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", default="default")
    parser.add_argument("--dataset", default="default", help="dataset label of the records")
    parser.add_argument("--out", type=Path, default=Path("runs/default-mine"))
    parser.add_argument("--config", type=Path, default=None)
    parser.add_argument("--results-dir", type=Path, default=None)
    parser.add_argument("--tag", default="", help="added to the record names (a rerun that "
                        "should not replace an earlier record)")
    args = parser.parse_args()
    cfg = (load_config(args.config) if args.config else RunConfig()).mine
    dataset = prepare_dataset(DataConfig(source=args.source), args.out / "dataset").path
    result = mine_stage(cfg, dataset, args.out / "interests", force=True, progress=False)
    report = json.loads((result.path / REPORT_FILE).read_text(encoding="utf-8"))
    for name, stats in report["miners"].items():
        notes = (f"{stats['backend']} {stats['model']}; ensemble {cfg.ensemble.kind}, labeler "
                 f"{cfg.labeler.kind}; {len(cfg.miners)} miner(s) in the run; tokens per second "
                 "over the whole stage (mining, ensembling, labelling, users)")
        scope = f"-{cfg.limit}" if cfg.limit else ""  # a sample and the catalogue differ
        scope += f"-{args.tag}" if args.tag else ""
        record_and_print(name=f"{args.dataset}-mine{scope}-{name}", dataset=args.dataset,
                         method=f"di mine: {name}", seconds=result.seconds, notes=notes,
                         figures=figures_of(name, stats, report, result.seconds),
                         directory=args.results_dir)


if __name__ == "__main__":
    main()
