"""One T5 trained on two SID views at once (``deepinterest.backbones.t5_views``), each
view beam-searched and the two lists merged (``deepinterest.eval.ensemble.fuse``).

    python benchmarks/bench_views.py --dataset runs/a/dataset \\
        --sids runs/a/sids --second-sids runs/b/sids \\
        --out runs/views-ab --record default-views-ab-valid

The two sids artifacts must come from the same dataset artifact (e.g. row 1's
plain SIDs and row 2's interest SIDs of ``bench_ablation.py``). Training
takes the run config's ``train`` and ``split`` settings (``--config``, the
defaults otherwise) through ``train_sft``, which validates the first view each
epoch; a finished ``--out`` is read back rather than trained again. The record
scores each view alone and the merge on every user of ``--split``; with
``--sasrec DIR`` (a SASRec that ``bench_sasrec.py --out-dir`` saved on the same
dataset) also SASRec alone and a hybrid: its top 20 merged with both views'
lists by ``--hybrid-rule`` (reciprocal ranks unless told), SASRec weighted by
each ``--sasrec-weight``. ``--rl-epochs N --rl-out DIR`` first tunes the scored
checkpoint with GRPO (``[train.rl]`` of ``--config``) and scores ``DIR/best``.
``--time-steps N`` instead times N training steps of a one-view ``t5`` (the first
view) and of the two-view model, alternating, in the same process (no training
folder is written).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from deepinterest.backbones.t5 import T5Backbone
from deepinterest.backbones.t5_views import TwoViewT5
from deepinterest.config import RunConfig, load_config
from deepinterest.data import load_dataset
from deepinterest.data.splits import leave_one_out
from deepinterest.eval.ensemble import RULES, fuse
from deepinterest.eval.generative import hybrid_candidates, merge_companion, ranks_in, view_lists
from deepinterest.eval.lists import Companion, Recommendations
from deepinterest.eval.metrics import metrics_from_ranks
from deepinterest.eval.rerank import crossfit_scores, fit_reranker, top_candidates
from deepinterest.schemas.sids import load_quantizer
from deepinterest.train.checkpoints import load_catalog, load_checkpoint, run_fingerprints
from deepinterest.train.sasrec import check_sasrec_items, load_sasrec, recommend_sasrec
from deepinterest.train.rl import RESULT_FILE as RL_RESULT_FILE, train_rl
from deepinterest.train.sft import RESULT_FILE, time_train_steps, train_sft
from records import record_and_print

METRICS = ("hr@5", "ndcg@5", "hr@10", "ndcg@10")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", type=Path, required=True)
    p.add_argument("--sids", type=Path, required=True, help="the first view")
    p.add_argument("--second-sids", type=Path, required=True, help="the second view")
    p.add_argument("--config", type=Path, default=None, help="run config (train, split, eval)")
    p.add_argument("--out", type=Path, default=None, help="the training folder (required "
                   "unless --time-steps)")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--patience", type=int, default=None, help="0 = no early stopping")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--checkpoint", choices=["best", "last"], default="best")
    p.add_argument("--split", choices=["valid", "test"], default="valid")
    p.add_argument("--weights", type=float, nargs=2, default=None,
                   help="the views' weights in their merge and the hybrid's (a view weighed "
                   "0 is left out of the learned merge)")
    p.add_argument("--second-weight", type=float, default=None,
                   help="the second view's share of the loss (TwoViewT5 second_weight)")
    p.add_argument("--second-decoder", action="store_true",
                   help="a decoder of its own for the second view (TwoViewT5 second_decoder)")
    p.add_argument("--sasrec", type=Path, default=None, metavar="DIR",
                   help="a SASRec saved on the same dataset (bench_sasrec.py --out-dir): its "
                   "lists are merged with the two views' (a hybrid)")
    p.add_argument("--sasrec-weight", type=float, nargs="+", default=[1.0],
                   help="SASRec's weight in the hybrid merge (each one scored; views weigh 1)")
    p.add_argument("--hybrid-rule", choices=(*RULES, "learned"), default="rrf",
                   help="how the hybrid merges the three lists (deepinterest.eval.ensemble; "
                   "learned: deepinterest.eval.rerank, scored beside the rrf hybrids)")
    p.add_argument("--rl-epochs", type=int, default=0, metavar="N",
                   help="GRPO ([train.rl] of --config) for N epochs from --out/--checkpoint "
                   "into --rl-out; the record then scores --rl-out/best")
    p.add_argument("--rl-out", type=Path, default=None, help="GRPO's folder (with --rl-epochs)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--time-steps", type=int, default=None, metavar="N",
                   help="time N steps of t5 and t5-views instead of training")
    p.add_argument("--record", default=None)
    p.add_argument("--results-dir", type=Path, default=None)
    return p.parse_args()


def run_config(args) -> RunConfig:
    cfg = load_config(args.config) if args.config else RunConfig()
    updates = {key: value for key, value in (("epochs", args.epochs), ("seed", args.seed),
                                             ("threads", args.threads)) if value is not None}
    if args.patience is not None:
        updates["patience"] = args.patience or None  # 0: no early stopping
    cfg.train.sft = cfg.train.sft.model_copy(update=updates)
    if args.second_weight is not None:
        cfg.train.options = {**cfg.train.options, "second_weight": args.second_weight}
    if args.second_decoder:
        cfg.train.options = {**cfg.train.options, "second_decoder": True}
    return cfg


def train(args, cfg: RunConfig, dataset, first, second, splits) -> None:
    """``--out`` trained (resumed when interrupted; nothing to do when finished)."""
    if (args.out / RESULT_FILE).is_file():
        return
    torch.manual_seed(cfg.train.sft.seed)
    model = TwoViewT5(catalog=first, second=second, **cfg.train.options)
    if cfg.train.init_from_codebooks:
        model.init_code_embeddings(load_quantizer(args.sids).codebooks,
                                   load_quantizer(args.second_sids).codebooks)
    provenance = run_fingerprints(args.dataset, args.sids) | {
        "second_sids": run_fingerprints(args.dataset, args.second_sids)["sids"]}
    train_sft(model, first, splits, cfg.train.sft, args.out, evaluation=cfg.eval,
              provenance=provenance)


def tune(args, cfg: RunConfig, first, splits) -> Path:
    """GRPO from the SFT checkpoint into ``--rl-out`` (resumed or read back like training);
    the checkpoint to score: ``--rl-out/best`` (the SFT start competes on validation)."""
    if (args.rl_out / RL_RESULT_FILE).is_file():
        return args.rl_out / "best"
    model = load_checkpoint(args.out / args.checkpoint, first)
    rl = cfg.train.rl.model_copy(update={"epochs": args.rl_epochs, "threads": args.threads})
    train_rl(model, first, splits, rl, args.rl_out, evaluation=cfg.eval,
             provenance=run_fingerprints(args.dataset, args.sids))
    return args.rl_out / "best"


def beams(cfg: RunConfig, model, examples) -> list[Recommendations]:
    """Each view's beam for every example."""
    return view_lists(model, [e.history for e in examples], users=[e.user for e in examples],
                      beam=cfg.eval.beam, max_history=cfg.split.max_history)


def score(args, cfg: RunConfig, dataset, model, splits) -> dict[str, float | int]:
    """Each view, their merge (and with ``--sasrec`` the hybrid) on every ``--split`` user."""
    examples = getattr(splits, args.split)
    histories = [e.history for e in examples]
    lists = beams(cfg, model, examples)
    targets = [e.target for e in examples]
    named = [("view 1", lists[0]), ("view 2", lists[1]),
             ("merged", fuse(lists, weights=args.weights, topk=10))]
    if args.sasrec is not None:
        check_sasrec_items(args.sasrec, [item.id for item in dataset.items])
        sasrec = load_sasrec(args.sasrec)
        top = recommend_sasrec(sasrec, histories, topk=20)
        named += hybrid_lists(args, sasrec, top, lists)
        if args.hybrid_rule == "learned":
            named.append(("learned", learned(args, cfg, model, splits, lists, sasrec, top)))
    figures: dict[str, float | int] = {}
    for name, recs in named:
        values = metrics_from_ranks(ranks_in(recs, targets, topk=10), (5, 10)).values
        figures |= {f"{name} {k}": round(v, 4) for k, v in values.items() if k in METRICS}
    return figures | {"users": len(targets)}


def minutes(result_file: Path) -> float:
    """Every epoch's training, validation excluded (as bench_ablation counts)."""
    history = json.loads(result_file.read_text(encoding="utf-8"))["history"]
    return round(sum(h["train_seconds"] for h in history) / 60, 1)


def time_steps(args, cfg: RunConfig, first, second, splits) -> dict[str, float]:
    """Seconds per training step of each backbone, three alternating rounds (best of each)."""
    one_view = {k: v for k, v in cfg.train.options.items() if not k.startswith("second_")}
    builds = {"t5": lambda: T5Backbone(catalog=first, **one_view),
              "t5-views": lambda: TwoViewT5(catalog=first, second=second, **cfg.train.options)}
    best = {name: float("inf") for name in builds}
    for _ in range(3):
        for name, build in builds.items():
            torch.manual_seed(0)
            seconds, _ = time_train_steps(build(), splits, cfg.train.sft, args.time_steps)
            best[name] = min(best[name], seconds)
    return {f"{name} s/step": round(v, 4) for name, v in best.items()} | {
        "t5-views / t5": round(best["t5-views"] / best["t5"], 3)}


def hybrid_lists(args, model, sasrec: Recommendations,
                 lists) -> list[tuple[str, Recommendations]]:
    """SASRec's own top 20 (``sasrec``, from ``model``) and, per ``--sasrec-weight``, its
    merge with the two views (reciprocal ranks when ``--hybrid-rule learned``: the learned
    merge is scored apart)."""
    rule = "rrf" if args.hybrid_rule == "learned" else args.hybrid_rule
    return [("sasrec", sasrec)] + [
        (f"hybrid {w:g}", merge_companion(lists, sasrec, Companion(model, w, rule, 20),
                                          topk=10, view_weights=args.weights))
        for w in args.sasrec_weight]


def learned(args, cfg: RunConfig, model, splits, lists, sasrec_model,
            top: Recommendations) -> Recommendations:
    """The learned merge of the views (those ``--weights`` does not weigh 0) and SASRec's
    top 20 (``top``): on validation each half scored by a reranker fitted on the other
    half; on test by one fitted on all of validation."""
    kept = [n for n, w in enumerate(args.weights or [1.0] * len(lists)) if w > 0]
    sasrec = Companion(sasrec_model, 1.0, "learned", 20)
    examples = getattr(splits, args.split)
    cands = hybrid_candidates(model, None, [e.history for e in examples], sasrec,
                              lists=[lists[n] for n in kept], own=top)
    targets = torch.tensor([e.target for e in examples])
    if args.split == "valid":
        return top_candidates(cands, crossfit_scores(cands, targets), 10)
    valid = beams(cfg, model, splits.valid)
    fitted = hybrid_candidates(model, None, [e.history for e in splits.valid], sasrec,
                               lists=[valid[n] for n in kept])
    return fit_reranker(fitted, torch.tensor([e.target for e in splits.valid])).rerank(cands, 10)


def main() -> None:
    args = parse_args()
    started = time.perf_counter()
    torch.set_num_threads(args.threads)
    cfg = run_config(args)
    dataset = load_dataset(args.dataset)
    first, second = load_catalog(dataset, args.sids), load_catalog(dataset, args.second_sids)
    splits = leave_one_out(dataset, max_history=cfg.split.max_history)
    if args.time_steps:
        record_and_print(
            name=args.record or "two-view-t5-steps", dataset=str(args.dataset),
            method="training step time, t5 against t5-views (same process)",
            figures=time_steps(args, cfg, first, second, splits),
            seconds=time.perf_counter() - started, directory=args.results_dir,
            notes=f"the first {args.time_steps} steps of epoch 1, best of 3 alternating "
            f"rounds; options {cfg.train.options}; batch {cfg.train.sft.batch_size}; "
            f"precision {cfg.train.sft.precision}; threads {args.threads}")
        return
    if args.out is None:
        raise SystemExit("--out: the training folder is required")
    if args.rl_epochs and args.rl_out is None:
        raise SystemExit("--rl-epochs: name GRPO's folder with --rl-out")
    train(args, cfg, dataset, first, second, splits)
    scored = tune(args, cfg, first, splits) if args.rl_epochs else args.out / args.checkpoint
    figures = score(args, cfg, dataset, load_checkpoint(scored, first).eval(), splits)
    result = json.loads((args.out / RESULT_FILE).read_text(encoding="utf-8"))
    figures |= {"epochs run": result["epochs_run"], "best epoch": result["best_epoch"],
                "training minutes": minutes(args.out / RESULT_FILE)}
    if args.rl_epochs:
        rl = json.loads((args.rl_out / RL_RESULT_FILE).read_text(encoding="utf-8"))
        figures |= {"rl best epoch": rl["best_epoch"],
                    "rl training minutes": minutes(args.rl_out / RL_RESULT_FILE)}
    record_and_print(
        name=args.record or "two-view-t5", dataset=str(args.dataset),
        method=f"one T5 on two SID views ({args.sids} + {args.second_sids}), {args.split}",
        figures=figures, seconds=time.perf_counter() - started, directory=args.results_dir,
        notes=notes(args, cfg, scored))


def notes(args, cfg: RunConfig, scored: Path) -> str:
    """The record's notes: what was scored and how it was trained and merged."""
    rule = "rrf" if args.hybrid_rule == "learned" else args.hybrid_rule
    learned = ("" if args.hybrid_rule != "learned" else
               "learned: SASRec's list and the views' (those weighted above 0) reranked by "
               "deepinterest.eval.rerank, fitted on "
               + ("the other half of validation (2 folds); " if args.split == "valid"
                  else "every validation user; "))
    hybrid = ("" if args.sasrec is None else
              f"hybrid: SASRec {args.sasrec}'s top 20 merged with both views by {rule}; "
              f"{learned}")
    rl = (f"; GRPO from {args.out / args.checkpoint}, {args.rl_epochs} epochs, "
          f"rl {cfg.train.rl.model_dump(exclude={'epochs', 'threads'})}"
          if args.rl_epochs else "")
    return (f"{scored}; every {args.split} user; each view's beam {cfg.eval.beam} merged by "
            f"probability, weights {args.weights or 'equal'}; {hybrid}"
            f"sft {cfg.train.sft.model_dump()}; options {cfg.train.options}{rl}")


if __name__ == "__main__":
    main()
