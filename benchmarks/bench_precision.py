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

import statistics
import time

from deepinterest.results import record_and_print

# benchmarks/bench_threads.py: the script's own folder is first on sys.path
from bench_threads import load_inputs, parse_step_args, rate


def main() -> None:
    args = parse_step_args(__doc__)
    started = time.perf_counter()
    cfg, dataset, catalog, splits = load_inputs(args)
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
