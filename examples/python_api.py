"""The data and evaluation layers from Python: what `di run` does, step by step.

    python examples/python_api.py [SOURCE]

SOURCE defaults to the embedded dataset; pass a folder such as
../shared/data/amazon-beauty to use real data.
"""

import sys
import tempfile

from deepinterest.baselines import MostPopular
from deepinterest.config import DataConfig
from deepinterest.data import leave_one_out, load_dataset
from deepinterest.data.prepare import prepare_dataset
from deepinterest.evaluate import evaluate_rankings

source = sys.argv[1] if len(sys.argv) > 1 else "default"
with tempfile.TemporaryDirectory() as tmp:
    stage = prepare_dataset(DataConfig(source=source), f"{tmp}/dataset")
    dataset = load_dataset(stage.path)
print(dataset.name, dataset.stats())

splits = leave_one_out(dataset, max_history=20)
print(f"train {len(splits.train)}  valid {len(splits.valid)}  test {len(splits.test)}")

model = MostPopular().fit(dataset)
metrics = evaluate_rankings(model.rank(len(splits.valid), 10), [e.target for e in splits.valid])
print("most popular, validation:", {k: round(v, 4) for k, v in metrics.values.items()})
