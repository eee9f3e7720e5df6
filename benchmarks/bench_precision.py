"""Training throughput with bf16 autocast against fp32 at a run config's T5 (on the GPU
when there is one, else one CPU thread), alternating in one run.

    python benchmarks/bench_precision.py --config examples/beauty.toml \\
        --dataset-dir runs/beauty-mine/dataset --sids-dir runs/beauty-mine/sids

Times ``--steps`` steps of the trainer's own loop per variant
(:func:`deepinterest.train.sft.time_train_steps`, ``sft.precision``),
``--repeats`` times alternating, and records the medians and their ratio.
Speed only: quality under bf16 is checked by the test suite on a tiny task,
not at this scale.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from deepinterest.config import load_config
from deepinterest.data.model import load_dataset
from deepinterest.data.splits import leave_one_out
from deepinterest.results import record_and_print
from deepinterest.train.stage import load_catalog

# benchmarks/bench_threads.py: the script's own folder is first on sys.path
from bench_threads import rate


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", type=Path, default=Path("examples/beauty.toml"))
    p.add_argument("--dataset-dir", type=Path, required=True)
    p.add_argument("--sids-dir", type=Path, required=True)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--record", default=None, help="record name (default <dataset>-sft-bf16)")
    args = p.parse_args()
    started = time.perf_counter()
    cfg = load_config(args.config)
    dataset = load_dataset(args.dataset_dir)
    catalog = load_catalog(dataset, args.sids_dir)
    splits = leave_one_out(dataset, max_history=cfg.split.max_history)
    rates: dict[str, list[float]] = {"fp32": [], "bf16": []}
    for _ in range(args.repeats):
        for precision in rates:
            variant = cfg.model_copy(deep=True)
            variant.train.sft.precision = precision
            rates[precision].append(rate(variant, catalog, splits, 1, args.steps))
    fp32, bf16 = (statistics.median(rates[k]) for k in ("fp32", "bf16"))
    figures = {"fp32 samples/s": round(fp32, 1), "bf16 samples/s": round(bf16, 1),
               "ratio": round(bf16 / fp32, 3)}
    record_and_print(name=args.record or f"{dataset.name}-sft-bf16", dataset=dataset.name,
                     method="SFT bf16 autocast vs fp32 (1 thread)", figures=figures,
                     seconds=time.perf_counter() - started,
                     notes=f"T5 {cfg.train.options}; batch {cfg.train.sft.batch_size}; median "
                     f"of {args.repeats} alternating timings of {args.steps} steps each")


if __name__ == "__main__":
    main()
