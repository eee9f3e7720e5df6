"""SASRec (full-softmax cross-entropy) on a dataset, recorded as a result record.

    python benchmarks/bench_sasrec.py --source ../shared/data/amazon-beauty --dataset amazon-beauty --threads 1

Prepares the dataset, trains :func:`deepinterest.train.sasrec.train_sasrec`
(leave-one-out, history 20, full ranking, early stopping on validation
NDCG@10), prints one line per epoch, and writes
``benchmarks/results/<dataset>-sasrec.json`` with validation metrics at the
best epoch and test metrics of that epoch's model. Every field of
``SASRecConfig`` is a flag with the library's default (``--epochs 50``,
``--dropout 0.3``, ``--no-bucket``, ...); the record keeps the resolved config
in its notes.
"""

from __future__ import annotations

import argparse
import tempfile
import time

from deepinterest.config import DataConfig
from deepinterest.data import load_dataset
from deepinterest.data.prepare import prepare_dataset
from records import record_and_print
from deepinterest.train.sasrec import SASRecConfig, SASRecResult, train_sasrec

# benchmarks/common.py: the script's own folder is first on sys.path
from common import add_model_flags, model_values


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", default="default", help="'default' or a dataset path")
    parser.add_argument("--dataset", default="default", help="dataset label of the record")
    parser.add_argument("--out-dir", default=None, help="save the best model here")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    add_model_flags(parser.add_argument_group("model and trainer (SASRecConfig)"), SASRecConfig)
    return parser.parse_args()


def figures_of(result: SASRecResult) -> dict[str, float | int]:
    figures: dict[str, float | int] = {}
    for split, metrics in (("valid", result.valid), ("test", result.test)):
        figures.update({f"{split} {k}": v for k, v in metrics.values.items()})
    figures["best epoch"] = result.best_epoch
    figures["epochs run"] = result.epochs_run
    figures["seconds per epoch"] = sum(h.seconds for h in result.history) / result.epochs_run
    figures["parameters"] = result.model.num_parameters()
    return figures


def main() -> None:
    args = parse_args()
    config = SASRecConfig(**model_values(args, SASRecConfig))
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        dataset = load_dataset(prepare_dataset(DataConfig(source=args.source), tmp + "/d").path)
    print(f"{args.dataset}: {dataset.stats()}", flush=True)
    result = train_sasrec(dataset, config, out_dir=args.out_dir, progress=not args.quiet)
    notes = (f"config {config.model_dump_json()}; test metrics once, at the best validation "
             "epoch; history items not removed; ties counted against the target")
    record_and_print(name=f"{args.dataset}-sasrec", dataset=args.dataset,
                     method="SASRec (full softmax, 2x64)", figures=figures_of(result),
                     seconds=time.perf_counter() - start, notes=notes)


if __name__ == "__main__":
    main()
