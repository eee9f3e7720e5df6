"""SFT throughput of the training loop as it was (fp32, torch dropout) against each
speed-up alone and the default that combines them, at a run config's T5, in one run.

    python benchmarks/bench_sft_speed.py --config examples/beauty.toml \\
        --dataset-dir runs/beauty-mine/dataset --sids-dir runs/beauty-mine/sids

Variants (``sft.precision`` and the T5 option ``packed_dropout``): ``before``
= fp32 and ``nn.Dropout`` (the loop before either change); ``bf16`` = bf16
autocast only; ``packed`` = packed dropout only; ``default`` = the library's
defaults (``precision = "auto"``, packed dropout). Each variant times
``--steps`` steps of the trainer's own loop
(:func:`deepinterest.train.sft.time_train_steps`) on one thread (or the GPU),
``--repeats`` times alternating; the record holds the medians and each
variant's ratio to ``before``. Speed only: that the variants train to the
same quality is checked by the test suite (embedded dataset) and by the
``beauty-t5-4ep-*`` records (Beauty).
"""

from __future__ import annotations

import statistics
import time

from records import record_and_print

# benchmarks/bench_threads.py: the script's own folder is first on sys.path
from bench_threads import load_inputs, parse_step_args, rate

VARIANTS = {  # name: (sft.precision, T5 packed_dropout)
    "before": ("fp32", False),
    "bf16": ("bf16", False),
    "packed": ("fp32", True),
    "default": ("auto", True),
}


def main() -> None:
    args = parse_step_args(__doc__)
    started = time.perf_counter()
    cfg, dataset, catalog, splits = load_inputs(args)
    rates: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for _ in range(args.repeats):
        for name, (precision, packed) in VARIANTS.items():
            variant = cfg.model_copy(deep=True)
            variant.train.sft.precision = precision
            variant.train.options = {**variant.train.options, "packed_dropout": packed}
            rates[name].append(rate(variant, catalog, splits, 1, args.steps))
    medians = {name: statistics.median(values) for name, values in rates.items()}
    figures: dict[str, float] = {}
    for name, value in medians.items():
        figures[f"{name} samples/s"] = round(value, 1)
    for name, value in medians.items():
        if name != "before":
            figures[f"{name} / before"] = round(value / medians["before"], 3)
    record_and_print(name=args.record or f"{dataset.name}-sft-speed", dataset=dataset.name,
                     method="SFT loop speed-ups against the loop before them (1 thread)",
                     figures=figures, seconds=time.perf_counter() - started,
                     notes=f"T5 {cfg.train.options}; batch {cfg.train.sft.batch_size}; median "
                     f"of {args.repeats} alternating timings of {args.steps} steps each "
                     "(epoch 1 batches); default precision resolved by the CPU's flags")


if __name__ == "__main__":
    main()
