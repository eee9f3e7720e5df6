"""Regenerate docs/results.md from the JSON records in benchmarks/results/.

    python benchmarks/build_results.py
    python benchmarks/build_results.py --benchmark-json benchmarks/.cache/micro.json

With ``--benchmark-json`` (the output of ``pytest benchmarks/micro
--benchmark-json=FILE``) it first writes one record per benchmark group:
each benchmark's median and minimum milliseconds and its median relative to
the group's fastest (a ratio measured in the same run).
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from deepinterest.artifacts import atomic_write_text
from records import (
    SEED, ResultRecord, learning_curve, load_records, render_page, write_record)

ROOT = Path(__file__).resolve().parent.parent
PREAMBLE = """Every figure below was measured by the command shown under it, on the machine
named there. Quality figures are test metrics at the best validation
checkpoint (leave-one-out, full ranking; see `docs/data.md`). Speed figures are
ratios against the alternative a user would pick, measured in the same run."""


MICRO_COMMAND = "pytest benchmarks/micro --benchmark-json=benchmarks/.cache/micro.json"


def micro_records(path: Path, directory: Path) -> list[Path]:
    """One result record per pytest-benchmark group of ``path``."""
    data = json.loads(path.read_text(encoding="utf-8"))
    groups: dict[str, list[dict]] = {}
    for bench in data["benchmarks"]:
        groups.setdefault(bench["group"] or bench["name"], []).append(bench)
    written = []
    for group, benches in groups.items():
        fastest = min(b["stats"]["median"] for b in benches)
        figures = {}
        for b in sorted(benches, key=lambda b: b["stats"]["median"]):
            name = b["name"].removeprefix("test_")
            figures[f"{name} median ms"] = round(b["stats"]["median"] * 1000, 3)
            figures[f"{name} min ms"] = round(b["stats"]["min"] * 1000, 3)
            figures[f"{name} x fastest"] = round(b["stats"]["median"] / fastest, 3)
        slug = re.sub(r"[^a-z0-9]+", "-", group.lower()).strip("-")
        written.append(write_record(
            name=f"micro-{slug}", dataset="synthetic", method=f"micro-benchmark: {group}",
            figures=figures, seconds=sum(b["stats"]["total"] for b in benches),
            command=MICRO_COMMAND, directory=directory,
            notes=f"pytest-benchmark {data.get('version', '')}; rounds "
            f"{[b['stats']['rounds'] for b in benches]}; one torch thread; recorded by "
            "python benchmarks/build_results.py --benchmark-json benchmarks/.cache/micro.json"))
    return written


def add_curve(directory: Path, name: str, result: str) -> Path:
    """Record ``name`` with the learning curve of the run whose ``sft_result.json`` is
    ``result`` added."""
    path = directory / f"{name}.json"
    record = ResultRecord.model_validate_json(path.read_text(encoding="utf-8"))
    history = json.loads(Path(result).read_text(encoding="utf-8"))["history"]
    record.curve = learning_curve(history)
    atomic_write_text(path, json.dumps(record.model_dump(), indent=2) + "\n")
    return path


def plot_curves(records: list[ResultRecord], dataset: str, path: Path) -> Path | None:
    """PNG of validation NDCG@10 against training minutes, one line per record of
    ``dataset`` that holds a curve; None when none does."""
    runs = [r for r in records if r.dataset == dataset and r.curve]
    if not runs:
        return None
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5))
    styles = ("-", "--", ":")  # the colour cycle repeats after 10 lines; the style then differs
    for i, r in enumerate(runs):
        minutes, ndcg = zip(*r.curve)
        ax.plot(minutes, ndcg, marker=".", markersize=3, linewidth=1.2,
                linestyle=styles[(i // 10) % len(styles)], label=r.name)
    ax.set_xlabel("training minutes (validation excluded)")
    ax.set_ylabel("validation NDCG@10")
    ax.set_title(f"{dataset}: validation NDCG@10 during training")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _mean(records, prefix: str, key: str) -> tuple[float, int] | None:
    """Mean of ``key`` over the seeds of one ablation record (names differing in -seedN)."""
    values = [r.figures[key] for r in records
              if SEED.sub("", r.name) == prefix and key in r.figures]
    return (sum(values) / len(values), len(values)) if values else None


def oracle_gap(records) -> str:
    """One line: the embedding miner against the oracle, fusion mode, on the embedded data."""
    miner = _mean(records, "default-ablation-2-interest-sids-sft-fusion0.5", "test ndcg@10")
    oracle = _mean(records, "default-ablation-2-interest-sids-sft-oracle-alllabels-fusion0.5",
                   "test ndcg@10")
    if not miner or not oracle:
        return ""
    return (f"Embedded dataset, miner against the answer key: the embedding miner's interests "
            f"reach test NDCG@10 {miner[0]:.4f} in fusion mode, the oracle's (the planted "
            f"phrases, a ceiling) {oracle[0]:.4f}: a gap of {oracle[0] - miner[0]:.4f} "
            f"(means over {miner[1]} and {oracle[1]} seeds; docs/training.md).")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "results.md")
    parser.add_argument("--benchmark-json", type=Path, default=None,
                        help="pytest-benchmark output to turn into records first")
    parser.add_argument("--curve", action="append", default=[], metavar="RECORD=RESULT",
                        help="add to record RECORD the learning curve of a training run's "
                        "sft_result.json (for records written before records held curves)")
    args = parser.parse_args()
    for spec in args.curve:
        print(f"record {add_curve(args.records, *spec.split('=', 1))}")
    if args.benchmark_json is not None:
        for path in micro_records(args.benchmark_json, args.records):
            print(f"record {path}")
    records = load_records(args.records)
    plots = {}
    for dataset in sorted({r.dataset for r in records}):
        image = plot_curves(records, dataset, args.out.parent / "img" / f"curves-{dataset}.png")
        if image is not None:
            plots[dataset] = image.relative_to(args.out.parent).as_posix()
    preamble = "\n\n".join(filter(None, [PREAMBLE, oracle_gap(records)]))
    atomic_write_text(args.out, render_page(records, preamble=preamble, plots=plots))
    print(f"{args.out}: {len(records)} records")


if __name__ == "__main__":
    main()
