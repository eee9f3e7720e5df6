"""Most-popular baseline on a dataset, recorded as a result record.

    python benchmarks/baseline_popularity.py --source ../shared/data/amazon-beauty \\
        --dataset amazon-beauty

Prepares the dataset (all items), scores the most-popular ranking on
validation and test with :func:`deepinterest.eval.baselines.popularity_metrics`
(the computation behind ``di run``'s baseline stage; leave-one-out with the
default history of 20 and K in {5, 10}, docs/data.md), and writes
benchmarks/results/<dataset>-most-popular.json with the data statistics.
"""

from __future__ import annotations

import argparse
import tempfile
import time

from deepinterest.eval.baselines import popularity_metrics
from deepinterest.config import DataConfig, EvalConfig, SplitConfig
from deepinterest.data import load_dataset
from deepinterest.data.prepare import prepare_dataset
from records import record_and_print


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", default="default")
    parser.add_argument("--dataset", default="default", help="dataset label of the record")
    args = parser.parse_args()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        dataset = load_dataset(prepare_dataset(DataConfig(source=args.source), tmp + "/d").path)
    metrics = popularity_metrics(dataset, max_history=SplitConfig().max_history,
                                 ks=EvalConfig().ks)
    figures: dict[str, float | int] = {
        f"{split} {k}": v for split, m in metrics.items() for k, v in m.values.items()}
    stats = dataset.stats()
    figures.update(users=stats.users, items=stats.items, interactions=stats.interactions)
    record_and_print(name=f"{args.dataset}-most-popular", dataset=args.dataset,
                     method="most popular (full ranking, leave-one-out)", figures=figures,
                     seconds=time.perf_counter() - start,
                     notes="counts from interactions before each user's validation target")


if __name__ == "__main__":
    main()
