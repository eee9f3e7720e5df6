"""The method's ablation: what interest-enhanced SIDs and each GRPO reward add to plain SFT.

    python benchmarks/bench_ablation.py --workdir runs/ablation-default --prefix default
    python benchmarks/bench_ablation.py --config examples/beauty.toml \\
        --workdir runs/ablation-beauty --prefix amazon-beauty

Five rows, each a result record ``<prefix>-ablation-N-<slug>``, validation-selected
and tested once:

1. plain SIDs, SFT (``di run`` with the config as given, mining included);
2. interest-enhanced SIDs (``[tokenize] interests = "mine"``, the run's own
   interests), SFT;
3. row 2 + GRPO with exact-hit and MiniOneRec's rank-aware rewards;
4. row 2 + GRPO with the paper's reward alone (exact, valid, prefix, and
   quality on an exact hit; ``train.rl.rewards``' default with interests);
5. row 4's reward plus our interest-aware partial credit (weight 0.5).

Records made before the paper's reward got a row of its own name row 5
``ablation-4-interest-composite`` (same command with ``--rows 4`` then).

Rows 3 to 5 start from row 2's SFT checkpoint (or row 1's with ``--rl-from
plain``; ``rl_stage`` into their own folders) with the config's ``[train.rl]``
settings, and record the mean share of zero-variance groups over their
training steps. They run with ``keep_start = false``: the best of GRPO's own
epochs, even when the SFT start validates higher. Every row names the miner that produced the interests. A
rerun resumes: stages that are up to date are skipped.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from deepinterest.api import prepare_data
from deepinterest.config import (
    CollaborativeSpec,
    MinerSpec,
    RewardSpec,
    RunConfig,
    TokenizeConfig,
    load_config,
)
from deepinterest.data import load_dataset
from deepinterest.layout import RunLayout
from deepinterest.miners.scripted import planted_replies
from deepinterest.pipeline import run
from records import learning_curve, record_and_print
from deepinterest.train.stage import rl_stage

ROWS = {
    3: ("exact-rank", "GRPO, exact + rank rewards (MiniOneRec's RL)",
        [RewardSpec(name="exact"), RewardSpec(name="rank", options={"hit_reward": 0.0})]),
    4: ("paper-reward", "GRPO, the paper's reward (exact, valid, prefix, quality on a hit)",
        [RewardSpec(name="paper")]),
    5: ("interest-composite", "GRPO, paper's reward + interest-aware partial credit",
        [RewardSpec(name="paper"), RewardSpec(name="interest", weight=0.5)]),
}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", type=Path, default=None, help="run config (default: defaults)")
    p.add_argument("--workdir", type=Path, required=True)
    p.add_argument("--prefix", required=True, help="record names start with this")
    p.add_argument("--rl-epochs", type=int, default=None, help="override train.rl.epochs")
    p.add_argument("--rl-lr", type=float, default=None, help="override train.rl.lr")
    p.add_argument("--tag", default="", help="added to record and GRPO folder names "
                   "(e.g. lr3e-4 for a validation sweep)")
    p.add_argument("--rows", default="1,2,3,4,5",
                   help="rows to run, e.g. 2,3,4 (rows 3 to 5 need row 2's folder)")
    p.add_argument("--seed", type=int, default=None,
                   help="train.sft.seed and train.rl.seed (record names get -seedN)")
    p.add_argument("--interest-gate", type=int, default=0,
                   help="row 5's interest reward pays only when the completion shares this "
                   "many leading codes with the target (its gate_prefix; record and folder "
                   "names get -gateK)")
    p.add_argument("--collab-weight", type=float, default=0.0,
                   help="tokenize.collab_weight for every row: the collaborative slot "
                   "(tokenizers/collab.py); record and folder names get -collabW")
    p.add_argument("--miner", choices=["config", "oracle"], default="config",
                   help="config: the config's miners; oracle: the scripted miner answering "
                   "each item with its planted phrases (the embedded dataset's answer key: a "
                   "ceiling, never a method; record and folder names get -oracle)")
    p.add_argument("--all-labels", action="store_true",
                   help="tokenize.interest_labels = all: every mined descriptor joins the "
                   "SIDs, also those the labeler marked negative (record and folder names "
                   "get -alllabels)")
    p.add_argument("--fusion", type=float, default=None,
                   help="interest-enhanced rows embed item text and descriptors apart and fuse "
                   "them with this weight (tokenize.interest_mode = fusion, interest_weight; "
                   "record and folder names get -fusionW)")
    p.add_argument("--first", action="store_true",
                   help="interest-enhanced rows use interest-first SIDs (tokenize.interest_mode "
                   "= first: the first code quantizes the interests alone; record and folder "
                   "names get -first)")
    p.add_argument("--neighbours", type=float, default=None,
                   help="mine.collaborative.weight: every item's descriptors completed from "
                   "those of its co-purchases in the training split (miners/collaborative.py; "
                   "record and folder names get -neighboursW)")
    p.add_argument("--interest-tokens", type=int, default=0,
                   help="train.interest_tokens: the K interests most present in a history as "
                   "extra T5 encoder inputs (record and folder names get -itokK)")
    p.add_argument("--rl-from", choices=["interests", "plain"], default="interests",
                   help="rows 3 to 5 start from row 2's SFT (interest SIDs) or from row 1's "
                   "(plain SIDs, e.g. with the collaborative slot; record and folder names get "
                   "-fromplain)")
    p.add_argument("--patience", type=int, default=None,
                   help="train.sft.patience for the SFT rows (0: never stop early, every "
                   "epoch of the schedule runs); folder and record names get -patienceN")
    p.add_argument("--epochs", type=int, default=None,
                   help="train.sft.epochs for the SFT rows (the schedule's length); folder and "
                   "record names get -epochsN")
    p.add_argument("--results-dir", type=Path, default=None)
    return p.parse_args()


def miner_names(cfg: RunConfig) -> str:
    return " + ".join(m.label or m.backend for m in cfg.mine.miners) or "none"


def _variant(cfg: RunConfig) -> dict:
    """What sets a row apart from the config's plain run: one reading for names and labels."""
    t = cfg.tokenize
    return {"collab": t.collab_weight, "every": t.interest_labels == "all",
            "fusion": t.interest_weight if t.interest_mode == "fusion" else None,
            "first": t.interest_mode == "first",
            "neighbours": cfg.mine.collaborative.weight if cfg.mine.collaborative else None,
            "tokens": cfg.train.interest_tokens,
            "oracle": any(m.label == "oracle" for m in cfg.mine.miners)}


def collab_label(cfg: RunConfig) -> str:
    """What the record's method adds to the row: the collaborative slot, all labels, the
    fusion weight, and for the oracle that it is a ceiling."""
    v = _variant(cfg)
    parts = [f"collaborative slot w={v['collab']:g}" if v["collab"] else "",
             "every descriptor (labels ignored)" if v["every"] else "",
             f"fusion w={v['fusion']:g}" if v["fusion"] is not None else "",
             "interest-first SIDs" if v["first"] else "",
             f"collaborative interests w={v['neighbours']:g}"
             if v["neighbours"] is not None else "",
             f"{v['tokens']} interest tokens in the encoder" if v["tokens"] else "",
             "ORACLE interests: the planted phrases, a ceiling, not a method"
             if v["oracle"] else ""]
    return "".join(f", {p}" for p in parts if p)


def tokenize_settings(cfg: RunConfig) -> dict:
    """The tokenize settings that differ from the defaults (the interests path aside)."""
    given = cfg.tokenize.model_dump(mode="json", exclude={"interests", "cache_dir"})
    default = TokenizeConfig().model_dump(mode="json")
    return {k: v for k, v in given.items() if v != default.get(k)}


def slot_suffix(cfg: RunConfig) -> str:
    """SFT folders and records of runs that differ from the plain run get their own names."""
    v = _variant(cfg)
    return (f"-collab{v['collab']:g}" if v["collab"] else "") \
        + ("-oracle" if v["oracle"] else "") + ("-alllabels" if v["every"] else "") \
        + (f"-fusion{v['fusion']:g}" if v["fusion"] is not None else "") \
        + ("-first" if v["first"] else "") \
        + (f"-neighbours{v['neighbours']:g}" if v["neighbours"] is not None else "") \
        + (f"-itok{v['tokens']}" if v["tokens"] else "")


def oracle_miner(cfg: RunConfig, folder: Path) -> MinerSpec:
    """The scripted miner answering with the planted phrases of ``cfg``'s dataset."""
    dataset = load_dataset(prepare_data(cfg.data, folder).path)
    return MinerSpec(backend="scripted", label="oracle",
                     options={"replies": planted_replies(dataset)})


def figures_of(folder: Path, result_file: str) -> dict[str, float | int]:
    metrics = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
    result = json.loads((folder / result_file).read_text(encoding="utf-8"))
    out: dict[str, float | int] = {}
    for split in ("valid", "test"):
        out |= {f"{split} {k}": round(v, 4) for k, v in metrics[split].items()}
    full = folder.parent / "eval" / "metrics.json"  # an SFT row's eval stage: every user
    if result_file == "sft_result.json" and full.is_file():
        valid = json.loads(full.read_text(encoding="utf-8"))["valid"]
        out |= {f"full valid {k}": round(v, 4) for k, v in valid.items()}
    out |= {"best epoch": result["best_epoch"], "epochs run": result["epochs_run"]}
    # Over every epoch, also those of earlier invocations when the run was resumed (the
    # record's wall time is the last invocation's).
    out["training minutes"] = round(sum(h["train_seconds"] for h in result["history"]) / 60, 1)
    steps = [h["scalars"] for h in result["history"] if h.get("scalars")]
    if steps:
        out["zero-variance groups"] = round(sum(s["zero_variance"] for s in steps) / len(steps), 4)
        out["train reward"] = round(steps[-1]["reward"], 4)
    return out


def record(args, cfg: RunConfig, number: int, slug: str, label: str, folder: Path,
           result_file: str, seconds: float, notes: str) -> None:
    history = json.loads((folder / result_file).read_text(encoding="utf-8"))["history"]
    record_and_print(
        name=f"{args.prefix}-ablation-{number}-{slug}"
        + ("" if args.seed is None else f"-seed{args.seed}")
        + (f"-{args.tag}" if args.tag else ""), dataset=args.prefix,
        method=f"ablation {number}: {label}{collab_label(cfg)} "
        f"(interests: {miner_names(cfg)} miner)",
        figures=figures_of(folder, result_file), seconds=seconds,
        notes=f"{notes}; miners {miner_names(cfg)}; backbone {cfg.train.backbone} "
        f"{cfg.train.options}; tokenize {tokenize_settings(cfg)}", directory=args.results_dir,
        curve=learning_curve(history))


def sft_row(args, cfg: RunConfig, number: int, slug: str, label: str,
            keep: bool = True) -> RunLayout:
    """``di run`` of one SFT row (stages up to date are skipped); recorded when ``keep``."""
    started = time.perf_counter()
    run(cfg, progress=True)
    layout = RunLayout(cfg.workdir)
    if keep:
        record(args, cfg, number, slug, label, layout.sft, "sft_result.json",
               time.perf_counter() - started, f"di run into {cfg.workdir}; sft {cfg.train.sft}")
    return layout


def main() -> None:
    args = parse_args()
    if args.first and args.fusion is not None:
        raise SystemExit("--first and --fusion pick two interest modes: give one")
    base = load_config(args.config) if args.config else RunConfig()
    base.hybrid.enabled = False  # the method's rows measure the generative model alone
    if args.seed is not None:
        base.train.sft.seed = base.train.rl.seed = args.seed
    if args.collab_weight:
        base.tokenize.collab_weight = args.collab_weight
    if args.fusion is not None:
        base.tokenize.interest_mode, base.tokenize.interest_weight = "fusion", args.fusion
    if args.all_labels:
        base.tokenize.interest_labels = "all"
    if args.first:
        base.tokenize.interest_mode = "first"
    if args.miner == "oracle":
        base.mine.miners = [oracle_miner(base, args.workdir / "answer-key")]
    if args.neighbours is not None:
        base.mine.collaborative = CollaborativeSpec(weight=args.neighbours)
    if args.interest_tokens:
        base.train.interest_tokens = args.interest_tokens
    if args.patience is not None:
        base.train.sft.patience = args.patience or None
    if args.epochs is not None:
        base.train.sft.epochs = args.epochs
    suffix = slot_suffix(base) + ("" if args.patience is None else f"-patience{args.patience}") \
        + ("" if args.epochs is None else f"-epochs{args.epochs}")
    args.tag = "-".join(filter(None, [suffix[1:], args.tag]))
    rows = {int(r) for r in args.rows.split(",")}
    plain = base.model_copy(deep=True)
    plain.workdir = args.workdir / ("plain" + suffix)
    enhanced = base.model_copy(deep=True)
    enhanced.workdir = args.workdir / ("interests" + suffix)
    enhanced.tokenize.interests = "mine"
    from_plain = args.rl_from == "plain"
    rl_rows = rows & {3, 4, 5}
    # Rows 3 to 5 start from row 1's or row 2's SFT, run here when missing (skipped when up
    # to date) and recorded only when asked for.
    if 1 in rows or (rl_rows and from_plain):
        sft_row(args, plain, 1, "plain-sft", "plain SIDs, SFT", keep=1 in rows)
    if 2 in rows or (rl_rows and not from_plain):
        sft_row(args, enhanced, 2, "interest-sids-sft", "interest-enhanced SIDs, SFT",
                keep=2 in rows)
    start = plain if from_plain else enhanced
    layout = RunLayout(start.workdir)
    for number, (slug, label, rewards) in ROWS.items():
        if number not in rows:
            continue
        if number == 5 and args.interest_gate:
            slug, label = f"{slug}-gate{args.interest_gate}", \
                f"{label}, interest gated on {args.interest_gate} leading codes"
            rewards = [spec if spec.name != "interest" else spec.model_copy(
                update={"options": {"gate_prefix": args.interest_gate}}) for spec in rewards]
        if from_plain:
            slug = f"{slug}-fromplain"
        cfg = start.model_copy(deep=True)
        cfg.train.rl.rewards = rewards
        cfg.train.rl.keep_start = False  # the row measures what GRPO's own epochs reach
        if args.rl_epochs is not None:
            cfg.train.rl.epochs = args.rl_epochs
        if args.rl_lr is not None:
            cfg.train.rl.lr = args.rl_lr
        out = args.workdir / f"rl-{slug}" if not args.tag else args.workdir / f"rl-{slug}-{args.tag}"
        started = time.perf_counter()
        rl_stage(cfg.train, cfg.split, layout.dataset, layout.sids, layout.sft, out,
                 interests_dir=layout.interests, evaluation=cfg.eval)
        sids = "plain SIDs" if from_plain else "interest-enhanced SIDs"
        record(args, cfg, number, slug, f"{sids} + {label}", out,
               "rl_result.json", time.perf_counter() - started,
               f"rl_stage from {layout.sft}/best into {out}; rl {cfg.train.rl}")


if __name__ == "__main__":
    main()
