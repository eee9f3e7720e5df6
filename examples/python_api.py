"""The whole chain from Python, then its stages one at a time, then your own model.

    python examples/python_api.py [CONFIG]

CONFIG (TOML or YAML) defaults to the built-in defaults: the embedded dataset,
run under runs/default, as `di run` does.
"""

import sys

import deepinterest as di
from deepinterest.eval.baselines import MostPopular
from deepinterest.data import leave_one_out
from deepinterest.eval.metrics import evaluate_rankings

cfg = di.load_config(sys.argv[1]) if len(sys.argv) > 1 else di.RunConfig()


def report(stage: di.StageResult) -> None:
    state = "skipped (up to date)" if stage.skipped else f"done in {stage.seconds:.1f} s"
    print(f"[{stage.stage}] {state} -> {stage.path}")


# 1. The whole chain: data, mine, tokenize, SFT, (GRPO when [train.rl] enabled), eval.
result = di.run(cfg, on_stage=report, progress=False)
print("test metrics:", di.read_metrics(result.workdir / "eval")["test"])

# 2. The same stages one at a time; each is skipped because its config and inputs
#    are unchanged (change one, e.g. cfg.train.sft.epochs, and it reruns with
#    everything after it).
work = result.workdir
report(di.prepare_data(cfg.data, work / "dataset"))
report(di.tokenize_items(work / "dataset", work / "sids", cfg, progress=False))
report(di.train_sft(cfg, progress=False))
report(di.evaluate_run(cfg))

# 3. Your own model, scored by the same evaluation code: the most-popular baseline.
dataset = di.load_dataset(work / "dataset")
splits = leave_one_out(dataset, max_history=cfg.split.max_history)
model = MostPopular().fit(dataset)
metrics = evaluate_rankings(model.rank(len(splits.valid), 10), [e.target for e in splits.valid])
print("most popular, validation:", {k: round(v, 4) for k, v in metrics.values.items()})
