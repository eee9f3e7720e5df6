"""The quick start, measured: ``di run`` with the default config, recorded.

    python benchmarks/bench_default_run.py --threads 1

Runs the whole chain (embedded default dataset, MiniLM + residual k-means
SIDs, T5 SFT with the trainer's defaults, beam-20 evaluation) in a fresh
temporary work folder, exactly as ``di run`` does, and writes
``benchmarks/results/default-t5-run.json`` with the T5's validation and test
metrics, its best epoch and the wall time of the whole run. ``--threads``
sets ``train.sft.threads`` and ``--precision`` ``train.sft.precision`` (the only
changes from the defaults); the
embedding cache is a fresh temporary folder too, so embedding time counts.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from deepinterest.config import RunConfig
from deepinterest.pipeline import run
from records import record_and_print


def eval_figures(cfg: RunConfig, prefix: str = "") -> dict[str, float | int]:
    """The run's eval metrics on both splits, and its test users."""
    metrics = json.loads((cfg.workdir / "eval" / "metrics.json").read_text(encoding="utf-8"))
    figures: dict[str, float | int] = {}
    for split in ("valid", "test"):
        figures.update({f"{prefix}{split} {k}": v for k, v in metrics[split].items()})
    return figures | {f"{prefix}test users": metrics["users"]["test"]}


def hybrid_figures(cfg: RunConfig, threads: int | None, rule: str,
                   prefix: str = "hybrid ") -> dict[str, float | int]:
    """The same run again with ``[hybrid]`` enabled under ``rule`` (every earlier stage
    skipped; SASRec trained by the first such run)."""
    cfg.hybrid.enabled, cfg.hybrid.rule = True, rule
    cfg.hybrid.sasrec.threads = threads
    start = time.perf_counter()
    run(cfg, progress=False)
    return eval_figures(cfg, prefix) | {
        f"{prefix}seconds added": round(time.perf_counter() - start, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=None, help="train.sft.threads")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16"),
                        help="train.sft.precision")
    parser.add_argument("--hybrid", action="store_true",
                        help="then [hybrid] enabled on the same run: the time it adds (the "
                        "SASRec stage, eval again) and the merged metrics")
    parser.add_argument("--hybrid-rules", nargs="+", default=["rrf"],
                        choices=("rrf", "probability", "learned"),
                        help="with --hybrid: each merge rule in turn on the same run (the "
                        "first one's figures are 'hybrid ...', the others' 'hybrid RULE ...')")
    args = parser.parse_args()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = RunConfig(workdir=Path(tmp) / "run")
        cfg.tokenize.cache_dir = Path(tmp) / "cache"
        cfg.train.sft.threads = args.threads
        cfg.train.sft.precision = args.precision
        cfg.hybrid.enabled = False  # the T5 alone first; --hybrid adds SASRec after
        run(cfg, progress=False)
        seconds = time.perf_counter() - start
        sft = json.loads((cfg.workdir / "sft" / "metrics.json").read_text(encoding="utf-8"))
        figures = eval_figures(cfg)
        for n, rule in enumerate(args.hybrid_rules if args.hybrid else []):
            figures |= hybrid_figures(cfg, args.threads, rule,
                                      "hybrid " if n == 0 else f"hybrid {rule} ")
    figures.update({"best epoch": sft["best_epoch"], "epochs run": sft["epochs_run"]})
    suffix = ("" if args.precision == "fp32" else f"-{args.precision}") + (
        "-hybrid" if args.hybrid else "") + "".join(f"-{r}" for r in args.hybrid_rules[1:])
    record_and_print(
        name="default-t5-run" + suffix,
        dataset="default", method=f"di run: T5 with the default config ({args.precision})",
        figures=figures, seconds=seconds,
        notes=f"whole chain in a fresh folder (data, embeddings, SIDs, SFT, eval, baseline); "
        f"config: {cfg.train.model_dump()}"
        + (f"; then [hybrid] {cfg.hybrid.model_dump(exclude={'rule'})} with rules "
           f"{args.hybrid_rules} in turn" if args.hybrid else ""))


if __name__ == "__main__":
    main()
