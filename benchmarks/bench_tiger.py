"""TIGER-style T5 on semantic IDs: SFT on a dataset artifact, beam-20 evaluation.

Trains :class:`deepinterest.backbones.t5.T5Backbone` with
:func:`deepinterest.train.sft.train_sft` on the ``dataset`` and ``sids``
artifacts of a run, validates each epoch on a seeded subset of validation
users, evaluates the best checkpoint on every test user, and writes the
result record ``benchmarks/results/<dataset>-tiger-t5.json``.

Model flags are ``T5Backbone``'s keyword parameters, trainer flags are
``SFTConfig``'s fields and ``--beam`` / ``--max-history`` are ``EvalConfig``'s
and ``SplitConfig``'s, with the library's defaults (``--help`` lists them),
so a command means what the same settings mean in ``di train``.

``--probe-steps N`` times N of the trainer's own steps
(:func:`deepinterest.train.sft.time_train_steps`) and a beam search over
``--probe-users`` validation users instead, and prints what an epoch, the
validations and the test pass would cost (no record): size the model and the
number of epochs with it before a long run.

Example (Beauty, 1 thread)::

    python benchmarks/bench_tiger.py --dataset-dir runs/beauty/dataset \\
        --sids-dir runs/beauty/sids --out runs/beauty/tiger --threads 1
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch

from deepinterest.backbones.base import SIDCatalog
from deepinterest.backbones.t5 import T5Backbone, count_parameters
from deepinterest.config import EvalConfig, SFTConfig, SplitConfig, TrainConfig
from deepinterest.data.model import load_dataset
from deepinterest.data.splits import Splits, leave_one_out
from dataclasses import asdict

from records import learning_curve, record_and_print
from deepinterest.eval.generative import target_ranks
from deepinterest.train.sft import SFTResult, time_train_steps, train_sft, valid_subset
from deepinterest.train.checkpoints import load_catalog
from deepinterest.train.stage import init_from_codebooks

# benchmarks/common.py: the script's own folder is first on sys.path
from common import add_model_flags, add_signature_flags, model_values, signature_values


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset-dir", type=Path, default=Path("runs/beauty/dataset"))
    p.add_argument("--sids-dir", type=Path, default=Path("runs/beauty/sids"))
    p.add_argument("--out", type=Path, default=Path("runs/beauty/tiger"),
                   help="checkpoint folder (best/, last/); a rerun resumes from last/")
    p.add_argument("--results-dir", type=Path, default=None)
    p.add_argument("--record", default=None, help="record name (default: <dataset>-tiger-t5)")
    p.add_argument("--method", default="TIGER-style T5 (SIDs, no interests)",
                   help="method label of the record")
    add_signature_flags(p.add_argument_group("model (T5Backbone)"), T5Backbone.__init__)
    add_model_flags(p.add_argument_group("trainer (SFTConfig)"), SFTConfig)
    add_model_flags(p.add_argument_group("evaluation (EvalConfig)"), EvalConfig)
    add_model_flags(p.add_argument_group("split (SplitConfig)"), SplitConfig)
    p.add_argument("--init-codebooks", action="store_true",
                   help=TrainConfig.model_fields["init_from_codebooks"].description)
    p.add_argument("--probe-steps", type=int, default=0, help="time this many steps and stop")
    p.add_argument("--probe-users", type=int, default=512)
    return p.parse_args(argv)


def build_model(args: argparse.Namespace, catalog: SIDCatalog) -> T5Backbone:
    torch.manual_seed(args.seed)  # the initial weights, as the SFT stage seeds them
    model = T5Backbone(catalog=catalog, **signature_values(args, T5Backbone.__init__))
    if args.init_codebooks:
        init_from_codebooks(model, args.sids_dir)
    return model


def probe(args, cfg: SFTConfig, evaluation: EvalConfig, splits: Splits, catalog: SIDCatalog,
          model: T5Backbone) -> None:
    """Time ``--probe-steps`` trainer steps and a beam search; print the cost of a full run."""
    step_s, steps = time_train_steps(model, splits, cfg, args.probe_steps)
    users = splits.valid[:args.probe_users]
    start = time.perf_counter()
    target_ranks(model, catalog, users, beam=evaluation.beam, topk=max(evaluation.ks),
                 batch_size=cfg.eval_batch_size, max_history=splits.max_history)
    user_s = (time.perf_counter() - start) / max(len(users), 1)
    epoch_s = step_s * steps
    valid_s = user_s * len(valid_subset(splits.valid, cfg))
    test_s = user_s * len(splits.test)
    validations = math.ceil(cfg.epochs / cfg.eval_every)  # every eval_every-th and the last
    total_min = (cfg.epochs * epoch_s + validations * valid_s + test_s) / 60
    print(f"parameters {count_parameters(model):,}; {steps} steps/epoch; "
          f"{step_s:.3f} s/step -> {epoch_s / 60:.1f} min/epoch; beam search "
          f"{user_s * 1000:.1f} ms/user -> validation {valid_s / 60:.1f} min, "
          f"test {test_s / 60:.1f} min; {cfg.epochs} epochs ~ {total_min:.0f} min")


def figures(result: SFTResult, model: T5Backbone) -> dict[str, float | int]:
    out: dict[str, float | int] = {}
    for split, metrics in (("valid", result.valid), ("test", result.test)):
        for k in (5, 10):
            out[f"{split} hr@{k}"] = round(metrics[f"hr@{k}"], 4)
            out[f"{split} ndcg@{k}"] = round(metrics[f"ndcg@{k}"], 4)
    hist = result.history
    out.update({"best epoch": result.best_epoch, "epochs run": result.epochs_run,
                "parameters": count_parameters(model),
                "seconds per epoch": round(sum(h.seconds for h in hist) / max(len(hist), 1), 1),
                "samples per second": round(sum(h.samples_per_second for h in hist)
                                            / max(len(hist), 1), 1)})
    return out


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    started = time.perf_counter()
    cfg = SFTConfig(**model_values(args, SFTConfig))
    evaluation = EvalConfig(**model_values(args, EvalConfig))
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    dataset = load_dataset(args.dataset_dir)
    catalog = load_catalog(dataset, args.sids_dir)  # SIDs of another dataset or order: an error
    splits = leave_one_out(dataset, max_history=args.max_history)
    model = build_model(args, catalog)
    if args.probe_steps:
        probe(args, cfg, evaluation, splits, catalog, model)
        return
    result = train_sft(model, catalog, splits, cfg, args.out, progress=True,
                       evaluation=evaluation)
    notes = (f"{len(splits.train):,} training prefixes; validation each epoch on "
             f"{result.valid.users:,} seeded validation users (valid figures), test on all "
             f"{result.test.users:,} users with the best checkpoint; beam {evaluation.beam}, "
             f"top {max(evaluation.ks)}, history {splits.max_history}, SIDs {args.sids_dir}; model {model.options}; "
             f"trainer {cfg.model_dump()}; history items not removed from the ranking"
             + ("; code embeddings initialised from the quantizer's codebooks"
                if args.init_codebooks else ""))
    record_and_print(name=args.record or f"{dataset.name}-tiger-t5", dataset=dataset.name,
                     method=args.method, figures=figures(result, model),
                     seconds=time.perf_counter() - started, notes=notes,
                     directory=args.results_dir,
                     curve=learning_curve([asdict(h) for h in result.history],
                                          f"ndcg@{max(evaluation.ks)}"))


if __name__ == "__main__":
    main()
