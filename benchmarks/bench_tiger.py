"""TIGER-style T5 on semantic IDs: SFT on a dataset artifact, beam-20 evaluation.

Trains :class:`deepinterest.backbones.t5.T5Backbone` with
:func:`deepinterest.train.sft.train_sft` on the ``dataset`` and ``sids``
artifacts of a run, validates each epoch on a seeded subset of validation
users, evaluates the best checkpoint on every test user, and writes the
result record ``benchmarks/results/<dataset>-tiger-t5.json``.

``--probe-steps N`` times N training steps and a beam search over
``--probe-users`` validation users instead, and prints what an epoch, a
validation and the test pass would cost (no record): size the model and the
number of epochs with it before a long run.

Example (Beauty, 1 thread)::

    python benchmarks/bench_tiger.py --dataset-dir runs/beauty/dataset \\
        --sids-dir runs/beauty/sids --out runs/beauty/tiger --threads 1
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import torch

from deepinterest.backbones.base import HistoryBatch, SIDCatalog
from deepinterest.backbones.t5 import T5Backbone, count_parameters
from deepinterest.data.model import load_dataset
from deepinterest.data.splits import leave_one_out
from deepinterest.results import write_record
from deepinterest.train.generative_eval import target_ranks
from deepinterest.train.sft import SFTConfig, TrainData, epoch_batches, train_sft
from deepinterest.train.stage import init_from_codebooks

MODEL_ARGS = ("d_model", "encoder_layers", "decoder_layers", "heads", "d_kv", "d_ff", "dropout",
              "user_buckets")
TRAIN_ARGS = ("epochs", "batch_size", "lr", "weight_decay", "warmup_steps", "schedule",
              "patience", "eval_every", "eval_users", "beam", "seed", "max_history")


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
    p.add_argument("--threads", type=int, default=1)
    model = p.add_argument_group("model")
    for name, kind, default in (("d_model", int, 128), ("encoder_layers", int, 2),
                                ("decoder_layers", int, 2), ("heads", int, 4), ("d_kv", int, 32),
                                ("d_ff", int, 256), ("dropout", float, 0.1),
                                ("user_buckets", int, 0)):
        model.add_argument("--" + name.replace("_", "-"), type=kind, default=default)
    train = p.add_argument_group("trainer")
    for name, kind, default in (("epochs", int, 20), ("batch_size", int, 256), ("lr", float, 1e-3),
                                ("weight_decay", float, 0.01), ("warmup_steps", int, 100),
                                ("schedule", str, "cosine"), ("patience", int, 3),
                                ("eval_every", int, 1), ("eval_users", int, 2000),
                                ("beam", int, 20), ("seed", int, 0), ("max_history", int, 20)):
        train.add_argument("--" + name.replace("_", "-"), type=kind, default=default)
    p.add_argument("--init-codebooks", action="store_true",
                   help="start the code embeddings from the quantizer's codewords")
    p.add_argument("--probe-steps", type=int, default=0, help="time this many steps and stop")
    p.add_argument("--probe-users", type=int, default=512)
    return p.parse_args(argv)


def load_inputs(args: argparse.Namespace):
    """Dataset, splits and a catalogue whose item order is the dataset's."""
    dataset = load_dataset(args.dataset_dir)
    catalog = SIDCatalog.load(args.sids_dir)
    position = {item_id: i for i, item_id in enumerate(catalog.item_ids)}
    order = [position[item.id] for item in dataset.items]  # KeyError = SIDs of another dataset
    catalog = SIDCatalog([catalog.item_ids[i] for i in order], catalog.sids[order], catalog.sizes)
    return dataset, leave_one_out(dataset, max_history=args.max_history), catalog


def build_model(args: argparse.Namespace, catalog: SIDCatalog) -> T5Backbone:
    torch.manual_seed(args.seed)
    model = T5Backbone(catalog=catalog, **{k: getattr(args, k) for k in MODEL_ARGS})
    if args.init_codebooks:
        init_from_codebooks(model, args.sids_dir)
    return model


def probe(args, splits, catalog, model) -> None:
    """Time ``--probe-steps`` steps and a beam search; print the cost of a full run."""
    cfg = SFTConfig(**{k: getattr(args, k) for k in TRAIN_ARGS}, threads=args.threads)
    data = TrainData.from_examples(splits.train, cfg.max_history)
    batches = epoch_batches(data.lengths, cfg.batch_size, seed=cfg.seed, epoch=1)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
    model.train()
    start = time.perf_counter()
    for rows in batches[:args.probe_steps]:
        width = int(data.lengths[rows].max())  # trimmed like the trainer's batches
        batch = HistoryBatch(data.items[rows, -width:], data.users[rows])
        loss = model.loss(batch, data.targets[rows])
        opt.zero_grad()
        loss.backward()
        opt.step()
    step_s = (time.perf_counter() - start) / min(args.probe_steps, len(batches))
    start = time.perf_counter()
    target_ranks(model, catalog, splits.valid[:args.probe_users], beam=cfg.beam, topk=10)
    user_s = (time.perf_counter() - start) / args.probe_users
    epoch_s = step_s * len(batches)
    valid_s = user_s * (cfg.eval_users or len(splits.valid))
    test_s = user_s * len(splits.test)
    total_min = (args.epochs * (epoch_s + valid_s) + test_s) / 60
    print(f"parameters {count_parameters(model):,}; {len(batches)} steps/epoch; "
          f"{step_s:.3f} s/step -> {epoch_s / 60:.1f} min/epoch; beam search "
          f"{user_s * 1000:.1f} ms/user -> validation {valid_s / 60:.1f} min, "
          f"test {test_s / 60:.1f} min; {args.epochs} epochs ~ {total_min:.0f} min")


def figures(result, model: T5Backbone) -> dict[str, float | int]:
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
    torch.set_num_threads(args.threads)
    dataset, splits, catalog = load_inputs(args)
    model = build_model(args, catalog)
    if args.probe_steps:
        probe(args, splits, catalog, model)
        return
    cfg = SFTConfig(**{k: getattr(args, k) for k in TRAIN_ARGS}, threads=args.threads)
    result = train_sft(model, catalog, splits, cfg, args.out, progress=True)
    figs = figures(result, model)
    notes = (f"{len(splits.train):,} training prefixes; validation each epoch on "
             f"{result.valid.users:,} seeded validation users (valid figures), test on all "
             f"{result.test.users:,} users with the best checkpoint; beam {cfg.beam}, top 10, "
             f"SIDs {args.sids_dir}; model {dict((k, getattr(args, k)) for k in MODEL_ARGS)}; "
             f"trainer {cfg.model_dump()}; history items not removed from the ranking"
             + ("; code embeddings initialised from the quantizer's codebooks"
                if args.init_codebooks else ""))
    path = write_record(name=args.record or f"{dataset.name}-tiger-t5", dataset=dataset.name,
                        method=args.method, figures=figs,
                        seconds=time.perf_counter() - started,
                        command=shlex.join(["python", *sys.argv]), notes=notes,
                        directory=args.results_dir)
    print(f"wrote {path}: {figs}")


if __name__ == "__main__":
    main()
