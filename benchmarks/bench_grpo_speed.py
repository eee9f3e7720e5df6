"""GRPO step speed against SFT's at a run config's backbone, in one run.

    python benchmarks/bench_grpo_speed.py --config examples/beauty.toml \\
        --dataset-dir runs/beauty-mine/dataset --sids-dir runs/beauty-final/sids-bal

Times ``--steps`` steps of each trainer's own loop on epoch 1's batches
(:func:`deepinterest.train.sft.time_train_steps`,
:func:`deepinterest.train.rl.time_rl_steps`; one thread, or the GPU),
``--repeats`` times alternating, with the config's ``[train.sft]`` and
``[train.rl]`` settings (GRPO's default rewards without interests: exact +
rank). Records histories per second for both (an SFT sample is one history
and its target; a GRPO history brings ``group_size`` completions: a beam
search, the reference and policy forwards and an update), completions per
second for GRPO, and the ratios. Speed only: the weights are the config's
fresh initialisation, which costs a rollout the same as a trained model.
"""

from __future__ import annotations

import statistics
import time

import torch

from deepinterest.registry import create
from records import record_and_print
from deepinterest.train.rl import time_rl_steps
from deepinterest.train.sft import time_train_steps

# benchmarks/bench_threads.py: the script's own folder is first on sys.path
from bench_threads import load_inputs, parse_step_args


def _model(cfg, catalog):
    torch.manual_seed(cfg.train.sft.seed)
    return create("backbones", cfg.train.backbone, catalog=catalog, **cfg.train.options)


def main() -> None:
    args = parse_step_args(__doc__)
    started = time.perf_counter()
    cfg, dataset, catalog, splits = load_inputs(args)
    sft = cfg.train.sft.model_copy(update={"threads": 1})
    rl = cfg.train.rl.model_copy(update={"threads": 1})
    rates: dict[str, list[float]] = {"sft": [], "grpo": []}
    for _ in range(args.repeats):
        step_s, _ = time_train_steps(_model(cfg, catalog), splits, sft, args.steps)
        rates["sft"].append(sft.batch_size / step_s)
        step_s, _ = time_rl_steps(_model(cfg, catalog), catalog, splits, rl, args.steps)
        rates["grpo"].append(rl.batch_size / step_s)
    sft_rate, grpo_rate = (statistics.median(rates[k]) for k in ("sft", "grpo"))
    figures = {"sft histories/s": round(sft_rate, 1), "grpo histories/s": round(grpo_rate, 1),
               "grpo completions/s": round(grpo_rate * rl.group_size, 1),
               "grpo / sft histories": round(grpo_rate / sft_rate, 3),
               "grpo completions / sft histories": round(grpo_rate * rl.group_size / sft_rate, 3)}
    record_and_print(name=args.record or f"{dataset.name}-grpo-speed", dataset=dataset.name,
                     method="GRPO step speed against SFT (1 thread)", figures=figures,
                     seconds=time.perf_counter() - started,
                     notes=f"backbone {cfg.train.backbone} {cfg.train.options}; SFT batch "
                     f"{sft.batch_size}, precision {sft.precision}; GRPO batch {rl.batch_size} "
                     f"histories x G {rl.group_size} ({rl.generation}), beta {rl.beta}, "
                     f"precision {rl.precision}; median of {args.repeats} alternating timings "
                     f"of {args.steps} steps each")


if __name__ == "__main__":
    main()
