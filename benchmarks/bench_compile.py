"""``torch.compile`` of the SFT step against eager, at a run config's T5, in one run.

    python benchmarks/bench_compile.py --dataset-dir runs/beauty-mine/dataset \\
        --sids-dir runs/beauty-mine/sids --steps 30

Builds the trainer's loss module (``distributed.LossForward`` around the
backbone, as :func:`deepinterest.train.sft.train_sft` does) twice from the
same seed, compiles one with ``torch.compile(dynamic=True)``, runs the first
10 of epoch 1's length-bucketed batches as warm-up (compilation happens
there), then times ``--steps`` more through the trainer's own step with the
config's precision, on one thread. Records both rates, the ratio, and the
warm-up seconds; this is why the trainer offers no compile option.
"""

from __future__ import annotations

import time

import torch

from deepinterest.registry import create
from records import record_and_print
from deepinterest.train import distributed as dd
from deepinterest.train.loop import epoch_batches
from deepinterest.train.sft import TrainData, _train_step

# benchmarks/bench_threads.py: the script's own folder is first on sys.path
from bench_threads import load_inputs, parse_step_args

WARMUP = 10


def run(cfg, catalog, data: TrainData, batches, compiled: bool) -> tuple[float, float]:
    """(warm-up seconds, samples per second) of one variant."""
    torch.manual_seed(cfg.train.sft.seed)
    backbone = create("backbones", cfg.train.backbone, catalog=catalog, **cfg.train.options)
    info = dd.init_distributed()
    opt = torch.optim.AdamW(backbone.parameters(), lr=cfg.train.sft.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)
    model = dd.LossForward(backbone, alignment_weight=0.0)
    if compiled:
        model = torch.compile(model, dynamic=True)
    backbone.train()
    start = time.perf_counter()
    for rows in batches[:WARMUP]:
        _train_step(model, opt, sched, backbone, data, rows, len(rows), cfg.train.sft, info)
    warm = time.perf_counter() - start
    start = time.perf_counter()
    timed = batches[WARMUP:]
    for rows in timed:
        _train_step(model, opt, sched, backbone, data, rows, len(rows), cfg.train.sft, info)
    return warm, sum(len(r) for r in timed) / (time.perf_counter() - start)


def main() -> None:
    args = parse_step_args(__doc__)
    started = time.perf_counter()
    cfg, dataset, catalog, splits = load_inputs(args)
    torch.set_num_threads(1)
    data = TrainData.from_examples(splits.train, splits.max_history)
    batches = epoch_batches(data.lengths, cfg.train.sft.batch_size, seed=cfg.train.sft.seed,
                            epoch=1)[:WARMUP + args.steps]
    eager_warm, eager = run(cfg, catalog, data, batches, compiled=False)
    compiled_warm, compiled = run(cfg, catalog, data, batches, compiled=True)
    figures = {"eager samples/s": round(eager, 1), "compiled samples/s": round(compiled, 1),
               "compiled / eager": round(compiled / eager, 3),
               "eager warm-up s": round(eager_warm, 1),
               "compiled warm-up s": round(compiled_warm, 1)}
    record_and_print(name=args.record or f"{dataset.name}-sft-compile", dataset=dataset.name,
                     method="SFT step: torch.compile(dynamic=True) vs eager (1 thread)",
                     figures=figures, seconds=time.perf_counter() - started,
                     notes=f"T5 {cfg.train.options}; batch {cfg.train.sft.batch_size}; precision "
                     f"{cfg.train.sft.precision}; {WARMUP} warm-up steps then {args.steps} timed "
                     f"steps of epoch 1's length-bucketed batches; torch {torch.__version__}")


if __name__ == "__main__":
    main()
