"""Result records: every figure a doc cites comes from one of these JSON files.

The benchmarks' own module (not part of the installed package): the scripts
in this folder import it as ``records``.

A benchmark or evaluation run calls :func:`write_record` (or
:func:`record_and_print`, which also prints the figures), which adds the
machine, the date and the package version, and writes
``benchmarks/results/<name>.json``. The record's command names its paths
relative to the repository root, so it reads the same on every checkout and
leaks no one's home or scratch folder. ``docs/results.md`` is generated from the
records by :func:`render_page` (``python benchmarks/build_results.py``), never
typed by hand, so a number in the docs always has a run and a command behind it.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import re
import shlex
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from deepinterest.artifacts import atomic_write_text

RESULTS_DIR_ENV = "DEEPINTEREST_RESULTS_DIR"


class ResultRecord(BaseModel):
    """One run's figures with everything needed to reproduce and judge them."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="file stem; a rerun of the same benchmark overwrites it")
    dataset: str
    method: str
    figures: dict[str, Any]
    seconds: float
    command: str
    machine: str
    date: str
    version: str
    notes: str = ""
    curve: list[tuple[float, float]] = Field(
        default_factory=list, description="training runs: (training minutes so far, "
        "validation NDCG@10) after each validation, for the learning-curve plot")


def machine_description() -> str:
    """CPU count, processor and OS, plus the GPU name when CUDA is visible."""
    text = f"{os.cpu_count()} cpu, {platform.machine()}, {platform.system()} {platform.release()}"
    try:
        import torch

        if torch.cuda.is_available():
            text += f", {torch.cuda.get_device_name(0)}"
    except ImportError:  # torch is a dependency, but keep records writable without it
        pass
    return text


def default_results_dir() -> Path:
    """``$DEEPINTEREST_RESULTS_DIR`` or ``benchmarks/results`` under the current directory."""
    return Path(os.environ.get(RESULTS_DIR_ENV, "benchmarks/results"))


def repository_root() -> Path:
    """The checkout holding this file, else the nearest folder from the current directory
    up that holds ``pyproject.toml`` and ``benchmarks/``, else the current directory."""
    here, cwd = Path(__file__).resolve(), Path.cwd().resolve()
    for folder in (*here.parents, cwd, *cwd.parents):
        if (folder / "pyproject.toml").is_file() and (folder / "benchmarks").is_dir():
            return folder
    return cwd


def _names_path(value: str, root: Path, cwd: Path) -> bool:
    """Absolute, or (run outside ``root``) an existing path from ``cwd``: a label such as
    ``--method 'T5 a/b'`` must not be rewritten just because it holds a slash."""
    if not value or Path(value).is_absolute():
        return bool(value)
    try:
        return cwd != root and (cwd / value).exists()
    except OSError:  # e.g. a long label is no valid file name
        return False


def _relative_token(token: str, root: Path, cwd: Path) -> str:
    """``token`` with its path (or the one after ``--flag=``) made relative to ``root``."""
    flag, eq, value = token.partition("=") if token.startswith("-") else ("", "", token)
    if not _names_path(value, root, cwd):
        return token
    return flag + eq + os.path.relpath(cwd / value, root)


def relative_command(command: str, root: str | Path | None = None) -> str:
    """``command`` with its paths relative to ``root`` (default :func:`repository_root`)."""
    base = Path(root).resolve() if root is not None else repository_root()
    cwd = Path.cwd().resolve()
    try:
        tokens = shlex.split(command)
    except ValueError:  # unbalanced quotes: keep the text rather than lose the record
        return command
    return shlex.join(_relative_token(t, base, cwd) for t in tokens)


def command_line(argv: list[str] | None = None) -> str:
    """``python`` + this process's arguments (``argv``, default ``sys.argv``), shell-quoted."""
    return shlex.join(["python", *(sys.argv if argv is None else argv)])


def write_record(
    *,
    name: str,
    dataset: str,
    method: str,
    figures: dict[str, Any],
    seconds: float,
    command: str | None = None,
    notes: str = "",
    directory: str | Path | None = None,
    root: str | Path | None = None,
    curve: list[tuple[float, float]] | None = None,
) -> Path:
    """Write one result record and return its path.

    ``command`` defaults to this process's :func:`command_line`; its paths are
    stored relative to ``root`` (default: :func:`repository_root`).
    """
    from deepinterest.version import __version__

    record = ResultRecord(
        name=name,
        dataset=dataset,
        method=method,
        figures=figures,
        seconds=round(float(seconds), 3),
        command=relative_command(command_line() if command is None else command, root),
        machine=machine_description(),
        date=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        version=__version__,
        notes=notes,
        curve=curve or [],
    )
    out = Path(directory) if directory is not None else default_results_dir()
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.json"
    atomic_write_text(path, json.dumps(record.model_dump(), indent=2) + "\n")
    return path


def learning_curve(history: list[dict[str, Any]], metric: str = "ndcg@10"
                   ) -> list[tuple[float, float]]:
    """(training minutes so far, validation ``metric``) after each validated epoch of a
    training history (``sft_result.json``'s ``history``: ``train_seconds``, ``valid``)."""
    minutes, curve = 0.0, []
    for epoch in history:
        minutes += epoch["train_seconds"] / 60
        if epoch.get("valid") and metric in epoch["valid"]:
            curve.append((round(minutes, 2), round(epoch["valid"][metric], 5)))
    return curve


def record_and_print(*, figures: dict[str, Any], **record: Any) -> Path:
    """:func:`write_record` (same keywords), then print its path and each figure."""
    path = write_record(figures=figures, **record)
    print(path)
    width = max(map(len, figures), default=0)
    for key, value in figures.items():
        print(f"{key:>{width}}  {_format_value(value)}")
    return path


def load_records(directory: str | Path) -> list[ResultRecord]:
    """All records of a folder, sorted by dataset then name."""
    records = [
        ResultRecord.model_validate_json(p.read_text(encoding="utf-8"))
        for p in sorted(Path(directory).glob("*.json"))
    ]
    return sorted(records, key=lambda r: (r.dataset, r.name))


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def _render_record(record: ResultRecord) -> list[str]:
    lines = [f"### {record.method} ({record.name})", ""]
    lines += ["| figure | value |", "|---|---|"]
    lines += [f"| {key} | {_format_value(val)} |" for key, val in record.figures.items()]
    lines += [
        "",
        f"- command: `{record.command}`",
        f"- wall time: {record.seconds:.1f} s; machine: {record.machine}; "
        f"date: {record.date}; version: {record.version}",
    ]
    if record.notes:
        lines.append(f"- notes: {record.notes}")
    lines.append(f"- record: `benchmarks/results/{record.name}.json`")
    return lines + [""]


SUMMARY_KEYS = ("test hr@5", "test ndcg@5", "test hr@10", "test ndcg@10")


def _summary(records: list[ResultRecord]) -> list[str]:
    """One row per record that reports test ranking metrics (ablation rows have their own
    table, :func:`_ablation`)."""
    rows = [r for r in records if all(k in r.figures for k in SUMMARY_KEYS)
            and not ABLATION_ROW.search(r.name)]
    if not rows:
        return []
    head = "| method | " + " | ".join(k.removeprefix("test ").upper() for k in SUMMARY_KEYS)
    lines = [head + " | wall time | record |", "|---|" + "---|" * (len(SUMMARY_KEYS) + 2)]
    for r in rows:
        cells = " | ".join(f"{r.figures[k]:.4f}" for k in SUMMARY_KEYS)
        lines.append(f"| {r.method} | {cells} | {r.seconds:.0f} s | {r.name} |")
    return ["Test metrics at a glance:", ""] + lines + [""]


# Records named <dataset>-ablation-<row>-<slug>[-<tag>] (benchmarks/bench_ablation.py).
ABLATION_ROW = re.compile(r"-ablation-(\d+)-")
ABLATION_KEYS = ("valid ndcg@10",) + SUMMARY_KEYS + ("zero-variance groups",)


def _ablation(records: list[ResultRecord]) -> list[str]:
    """The method's ablation in one table: a row per record, ordered by ablation row."""
    found = [(int(m.group(1)), r) for r in records if (m := ABLATION_ROW.search(r.name))]
    rows = sorted(found, key=lambda pair: (pair[0], pair[1].name))
    if not rows:
        return []
    head = ["row", "record", "valid NDCG@10", "HR@5", "NDCG@5", "HR@10", "NDCG@10",
            "zero-variance groups", "training minutes", "wall time"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for number, r in rows:
        cells = [f"{r.figures[k]:.4f}" if k in r.figures else "" for k in ABLATION_KEYS]
        # over every epoch of a resumed run, where wall time is the last invocation's
        cells.append(_format_value(r.figures.get("training minutes", "")))
        lines.append(f"| {number} | {r.name} | "
                     + " | ".join(cells) + f" | {r.seconds:.0f} s |")
    return ["The method's ablation (validation-selected, test reported; commands and "
            "miners in each record below):", ""] + lines + [""]


SEED = re.compile(r"-seed\d+")
SEED_KEYS = ("valid ndcg@10", "test hr@10", "test ndcg@10")


def _seed_spread(records: list[ResultRecord]) -> list[str]:
    """Ablation records run with several seeds (names that differ only in ``-seedN``;
    no suffix is the config's seed): mean, standard deviation and range over seeds."""
    groups: dict[str, list[ResultRecord]] = {}
    for r in records:
        if ABLATION_ROW.search(r.name):
            groups.setdefault(SEED.sub("", r.name), []).append(r)
    groups = {k: v for k, v in groups.items() if len(v) > 1}
    if not groups:
        return []
    head = ["record (seeds merged)", "seeds"] + [k.replace("ndcg", "NDCG").replace("hr", "HR")
                                                 for k in SEED_KEYS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in sorted(groups, key=lambda n: (int(ABLATION_ROW.search(n).group(1)), n)):
        cells = []
        for key in SEED_KEYS:
            values = [r.figures[key] for r in groups[name] if key in r.figures]
            mean = sum(values) / len(values)
            sd = (sum((v - mean) ** 2 for v in values) / max(len(values) - 1, 1)) ** 0.5
            cells.append(f"{mean:.4f} ± {sd:.4f} ({min(values):.4f}-{max(values):.4f})")
        lines.append(f"| {name} | {len(groups[name])} | " + " | ".join(cells) + " |")
    return ["Over seeds (mean ± standard deviation, range):", ""] + lines + [""]


def render_page(records: list[ResultRecord], *, preamble: str = "",
                plots: dict[str, str] | None = None) -> str:
    """Markdown page with one section per dataset and one table per record; ``plots``
    maps a dataset to an image (path relative to the page) shown under its summary."""
    lines = ["# Results", "", "Generated by `python benchmarks/build_results.py` from the JSON records",
             "in `benchmarks/results/`; do not edit by hand.", ""]
    if preamble:
        lines += [preamble.strip(), ""]
    for dataset in sorted({r.dataset for r in records}):
        section = [r for r in records if r.dataset == dataset]
        lines += [f"## {dataset}", ""] + _summary(section) + _ablation(section) \
            + _seed_spread(section)
        if plots and dataset in plots:
            lines += [f"![validation NDCG@10 against training minutes, {dataset}]"
                      f"({plots[dataset]})", ""]
        for record in section:
            lines += _render_record(record)
    return "\n".join(lines).rstrip() + "\n"
