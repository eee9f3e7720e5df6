"""Score the best checkpoint of an SFT run that was stopped before its schedule ended.

    python benchmarks/bench_stopped.py --config examples/beauty.toml \\
        --run runs/ablation-beauty/plain-collab0.5 --dataset amazon-beauty \\
        --name amazon-beauty-ablation-1-plain-sft-collab0.5 --method "..."

A long run that cannot finish within a session still has a best checkpoint
(``sft/best``, chosen on the validation subset) and its history (in
``sft/last/trainer.pt``). This evaluates that checkpoint on every validation
and test user, with the config's beam, ks and history length (as ``di eval``
does), and writes a record whose figures say at which epoch the run was
stopped. The provenance check still runs (dataset and SIDs of the run); only
the "training finished" condition is waived, and the record says so.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from deepinterest.config import load_config
from deepinterest.data.splits import leave_one_out
from deepinterest.layout import RunLayout
from records import learning_curve, record_and_print
from deepinterest.eval.generative import evaluate_generative
from deepinterest.train.checkpoints import open_trained


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, required=True, help="the run's config")
    p.add_argument("--run", type=Path, required=True, help="the run folder (its workdir)")
    p.add_argument("--dataset", required=True, help="dataset label of the record")
    p.add_argument("--name", required=True, help="record name")
    p.add_argument("--method", required=True)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--results-dir", type=Path, default=None)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    cfg, run = load_config(args.config), RunLayout(args.run)
    start = time.perf_counter()
    trained = open_trained(run.dataset, run.sids, run.checkpoint, finished=False)
    progress = torch.load(run.sft / "last" / "trainer.pt", map_location="cpu",
                          weights_only=False)["progress"]
    dataset, catalog, model = trained.dataset, trained.catalog, trained.backbone
    splits = leave_one_out(dataset, max_history=cfg.split.max_history)
    figures: dict[str, float | int] = {}
    for name, part in (("valid", splits.valid), ("test", splits.test)):
        metrics = evaluate_generative(model, catalog, part, beam=cfg.eval.beam,
                                      topk=max(cfg.eval.ks), ks=cfg.eval.ks,
                                      max_history=cfg.split.max_history)
        figures |= {f"{name} {k}": round(v, 4) for k, v in metrics.values.items()}
    history = progress["history"]
    figures |= {"best epoch": progress["best_epoch"], "epochs run": progress["epoch"],
                "epochs planned": cfg.train.sft.epochs,
                "training minutes": round(sum(h["train_seconds"] for h in history) / 60, 1)}
    record_and_print(name=args.name, dataset=args.dataset, method=args.method, figures=figures,
                     seconds=time.perf_counter() - start, directory=args.results_dir,
                     notes=f"stopped after epoch {progress['epoch']} of "
                     f"{cfg.train.sft.epochs}; best checkpoint {run.checkpoint} scored on every "
                     "validation and test user; the run's training did not finish, so its "
                     "folder has no manifest", curve=learning_curve(history))


if __name__ == "__main__":
    main()
