"""SASRec (full-softmax cross-entropy) on a dataset, recorded as a result record.

    python benchmarks/bench_sasrec.py --source ../shared/data/amazon-beauty --dataset amazon-beauty --threads 1

Prepares the dataset, trains :func:`deepinterest.train.sasrec.train_sasrec`
(leave-one-out, history 20, full ranking, early stopping on validation
NDCG@10), prints one line per epoch, and writes
``benchmarks/results/<dataset>-sasrec.json`` with validation metrics at the
best epoch and test metrics of that epoch's model. Every field of
``SASRecConfig`` can be overridden (``--epochs 50``, ``--dropout 0.3``,
``--no-bucket``, ...); the record keeps the resolved config in its notes.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time
import types
import typing

from deepinterest.config import DataConfig
from deepinterest.data import load_dataset
from deepinterest.data.prepare import prepare_dataset
from deepinterest.results import write_record
from deepinterest.train.sasrec import SASRecConfig, SASRecResult, train_sasrec


def _base_type(annotation: object) -> type:
    """``int`` of ``int | None``; the annotation itself otherwise."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return next(a for a in typing.get_args(annotation) if a is not type(None))
    return annotation  # type: ignore[return-value]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", default="default", help="'default' or a dataset path")
    parser.add_argument("--dataset", default="default", help="dataset label of the record")
    parser.add_argument("--out-dir", default=None, help="save the best model here")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    for name, field in SASRecConfig.model_fields.items():
        flag = "--" + name.replace("_", "-")
        kind = _base_type(field.annotation)
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None)
        else:
            parser.add_argument(flag, type=kind, default=None, help=field.description)
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
    overrides = {k: v for k in SASRecConfig.model_fields if (v := getattr(args, k)) is not None}
    config = SASRecConfig(**overrides)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        dataset = load_dataset(prepare_dataset(DataConfig(source=args.source), tmp + "/d").path)
    print(f"{args.dataset}: {dataset.stats()}", flush=True)
    result = train_sasrec(dataset, config, out_dir=args.out_dir, progress=not args.quiet)
    figures = figures_of(result)
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    notes = (f"config {config.model_dump_json()}; test metrics once, at the best validation "
             "epoch; history items not removed; ties counted against the target")
    path = write_record(name=f"{args.dataset}-sasrec", dataset=args.dataset,
                        method="SASRec (full softmax, 2x64)", figures=figures,
                        seconds=time.perf_counter() - start, command=command, notes=notes)
    print(path)
    for key, value in figures.items():
        print(f"{key:>18}  {value:.4f}" if isinstance(value, float) else f"{key:>18}  {value}")


if __name__ == "__main__":
    main()
