"""Training throughput with the thread default against torch's (every core), alone and
beside another busy job, at a run config's T5 (in one run, interleaved).

    python benchmarks/bench_threads.py --config examples/beauty.toml \\
        --dataset-dir runs/beauty-mine/dataset --sids-dir runs/beauty-mine/sids

For each scenario (nothing else running; one core kept busy by a spinning
process this script starts and stops) it times ``--steps`` training steps of
the trainer's own loop (:func:`deepinterest.train.sft.time_train_steps`)
with ``threads`` = the machine's cores (torch's default, the loop before the
default changed) and ``threads`` = None (the free cores,
:mod:`deepinterest.train.threads`), alternating ``--repeats`` times, and
records samples per second and their ratio.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from deepinterest.config import load_config
from deepinterest.data.model import load_dataset
from deepinterest.data.splits import leave_one_out
from deepinterest.registry import create
from records import record_and_print
from deepinterest.train.sft import time_train_steps
from deepinterest.train.checkpoints import load_catalog
from deepinterest.train.threads import default_threads


def rate(cfg, catalog, splits, threads: int | None, steps: int) -> float:
    torch.manual_seed(cfg.train.sft.seed)
    model = create("backbones", cfg.train.backbone, catalog=catalog, **cfg.train.options)
    sft = cfg.train.sft.model_copy(update={"threads": threads})
    step_s, _ = time_train_steps(model, splits, sft, steps)
    return sft.batch_size / step_s


def scenario(cfg, catalog, splits, steps: int, repeats: int) -> dict[str, float]:
    every, free = [], []
    chosen = default_threads()
    for _ in range(repeats):  # alternate, so drift hits both alike
        every.append(rate(cfg, catalog, splits, os.cpu_count(), steps))
        free.append(rate(cfg, catalog, splits, None, steps))
    a, b = statistics.median(every), statistics.median(free)
    return {"torch default samples/s": round(a, 1), "free-cores samples/s": round(b, 1),
            "ratio": round(b / a, 3), "threads chosen": chosen}


def parse_step_args(doc: str, users: bool = False) -> argparse.Namespace:
    """The flags of the training-speed benchmarks: a run config and its artifacts
    (and ``--users``, how many validation users a timed search reads)."""
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    p.add_argument("--config", type=Path, default=Path("examples/beauty.toml"))
    p.add_argument("--dataset-dir", type=Path, required=True)
    p.add_argument("--sids-dir", type=Path, required=True)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--record", default=None, help="record name")
    if users:
        p.add_argument("--users", type=int, default=512)
    return p.parse_args()


def load_inputs(args: argparse.Namespace):
    """(config, dataset, catalogue, splits) of a run's artifacts."""
    cfg = load_config(args.config)
    dataset = load_dataset(args.dataset_dir)
    catalog = load_catalog(dataset, args.sids_dir)
    return cfg, dataset, catalog, leave_one_out(dataset, max_history=cfg.split.max_history)


def main() -> None:
    args = parse_step_args(__doc__)
    started = time.perf_counter()
    cfg, dataset, catalog, splits = load_inputs(args)
    figures = {f"alone: {k}": v for k, v in
               scenario(cfg, catalog, splits, args.steps, args.repeats).items()}
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(1.0)
        figures |= {f"one core busy: {k}": v for k, v in
                    scenario(cfg, catalog, splits, args.steps, args.repeats).items()}
    finally:
        spinner.kill()
    record_and_print(name=args.record or f"{dataset.name}-sft-threads", dataset=dataset.name,
                     method="SFT thread default (free cores) vs torch default (all cores)",
                     figures=figures, seconds=time.perf_counter() - started,
                     notes=f"{os.cpu_count()} cores; T5 {cfg.train.options}; batch "
                     f"{cfg.train.sft.batch_size}; median of {args.repeats} alternating "
                     f"timings of {args.steps} steps each (epoch 1 batches)")


if __name__ == "__main__":
    main()
