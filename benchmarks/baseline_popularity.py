"""Most-popular baseline on a dataset, recorded as a result record.

    python benchmarks/baseline_popularity.py --source ../shared/data/amazon-beauty --dataset amazon-beauty

Prepares the dataset (all items, leave-one-out, history 20), scores the
most-popular ranking on validation and test, and writes
benchmarks/results/<dataset>-most-popular.json with the data statistics.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time

from deepinterest.baselines import MostPopular
from deepinterest.config import DataConfig
from deepinterest.data import leave_one_out, load_dataset
from deepinterest.data.prepare import prepare_dataset
from deepinterest.evaluate import evaluate_rankings
from deepinterest.results import write_record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--source", default="default")
    parser.add_argument("--dataset", default="default", help="dataset label of the record")
    args = parser.parse_args()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        dataset = load_dataset(prepare_dataset(DataConfig(source=args.source), tmp + "/d").path)
    splits = leave_one_out(dataset, max_history=20)
    model = MostPopular().fit(dataset)
    figures: dict[str, float | int] = {}
    for name, part in (("valid", splits.valid), ("test", splits.test)):
        m = evaluate_rankings(model.rank(len(part), 10), [e.target for e in part])
        figures.update({f"{name} {k}": v for k, v in m.values.items()})
    stats = dataset.stats()
    figures.update(users=stats.users, items=stats.items, interactions=stats.interactions)
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    path = write_record(name=f"{args.dataset}-most-popular", dataset=args.dataset,
                        method="most popular (full ranking, leave-one-out)", figures=figures,
                        seconds=time.perf_counter() - start, command=command,
                        notes="counts from interactions before each user's validation target")
    print(path)
    for key, value in figures.items():
        print(f"{key:>14}  {value:.4f}" if isinstance(value, float) else f"{key:>14}  {value}")


if __name__ == "__main__":
    main()
