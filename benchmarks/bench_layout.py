"""What TIGER's encoder layout costs: SFT samples/s and beam-search users/s of a run
config's T5 with one encoder position per history item (the default) against one
per code token (T5 option ``code_positions``), in one run.

    python benchmarks/bench_layout.py --config examples/beauty.toml \\
        --dataset-dir runs/beauty-mine/dataset --sids-dir runs/beauty-final/sids-bal

Each layout times ``--steps`` steps of the trainer's own loop
(:func:`deepinterest.train.sft.time_train_steps`, one thread) and a beam-20
search over ``--users`` validation users, ``--repeats`` times alternating; the
record holds the medians and the per-code layout's ratio to the default. Speed
only: the models are untrained, and a beam search costs the same whatever the
weights.
"""

from __future__ import annotations

import statistics
import time

import torch

from deepinterest.registry import create
from records import record_and_print
from deepinterest.eval.generative import target_ranks

# benchmarks/bench_threads.py: the script's own folder is first on sys.path
from bench_threads import load_inputs, parse_step_args, rate

LAYOUTS = {"item": False, "code": True}  # name: T5 code_positions


def search_rate(cfg, catalog, splits, users: int) -> float:
    """Validation users per second of a beam-20 search with an untrained model."""
    torch.manual_seed(0)
    model = create("backbones", cfg.train.backbone, catalog=catalog, **cfg.train.options).eval()
    examples = splits.valid[:users]
    start = time.perf_counter()
    target_ranks(model, catalog, examples, beam=20, topk=10, max_history=splits.max_history)
    return len(examples) / (time.perf_counter() - start)


def main() -> None:
    args = parse_step_args(__doc__, users=True)
    started = time.perf_counter()
    cfg, dataset, catalog, splits = load_inputs(args)
    torch.set_num_threads(1)
    train: dict[str, list[float]] = {name: [] for name in LAYOUTS}
    search: dict[str, list[float]] = {name: [] for name in LAYOUTS}
    for _ in range(args.repeats):  # alternate, so drift hits both alike
        for name, per_code in LAYOUTS.items():
            variant = cfg.model_copy(deep=True)
            variant.train.options = {**variant.train.options, "code_positions": per_code}
            train[name].append(rate(variant, catalog, splits, 1, args.steps))
            search[name].append(search_rate(variant, catalog, splits, args.users))
    figures: dict[str, float] = {}
    for label, values in (("SFT samples/s", train), ("search users/s", search)):
        medians = {name: statistics.median(v) for name, v in values.items()}
        for name, value in medians.items():
            figures[f"{name} layout {label}"] = round(value, 1)
        figures[f"code / item {label}"] = round(medians["code"] / medians["item"], 3)
    record_and_print(name=args.record or f"{dataset.name}-t5-layout-speed", dataset=dataset.name,
                     method="T5 encoder layout: a position per item vs per code token (1 thread)",
                     figures=figures, seconds=time.perf_counter() - started,
                     notes=f"T5 {cfg.train.options}; batch {cfg.train.sft.batch_size}; "
                     f"{catalog.positions} SID positions; median of {args.repeats} alternating "
                     f"timings of {args.steps} steps (epoch 1 batches) and of a beam-20 search "
                     f"over {args.users} validation users")


if __name__ == "__main__":
    main()
