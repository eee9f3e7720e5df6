"""The ``di`` command line: thin wrappers that build a config and call the Python API.

Errors caused by input (bad data, bad config, a missing optional dependency)
are printed as one clear message with exit status 2, without a traceback.
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path
from typing import Optional

import typer

from .config import (
    DataConfig,
    EvalConfig,
    MineConfig,
    RLConfig,
    RunConfig,
    SFTConfig,
    TokenizeConfig,
    TrainConfig,
)
from .errors import DeepInterestError
from .layout import RunLayout

# Where a stage command writes by default: its folder in the default run (as `di run`).
_DEFAULT_RUN = RunLayout(RunConfig.model_fields["workdir"].default)

# `di --help` lists the commands in pipeline order, not in the order they are defined.
COMMAND_ORDER = ("data", "mine", "tokenize", "train", "eval", "recommend", "run", "version")


class _PipelineOrder(typer.core.TyperGroup):
    def list_commands(self, ctx) -> list[str]:
        names = super().list_commands(ctx)
        rank = {name: n for n, name in enumerate(COMMAND_ORDER)}
        return sorted(names, key=lambda name: rank.get(name, len(rank)))


app = typer.Typer(help="deepinterest: generative recommendation with LLM-mined deep interests.",
                  no_args_is_help=True, pretty_exceptions_enable=False, cls=_PipelineOrder)
data_app = typer.Typer(help="Prepare and inspect datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")


def _friendly(func):
    """Turn DeepInterestError (and a rejected option value) into a message and exit status 2."""
    from pydantic import ValidationError

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except DeepInterestError as exc:
            _fail(str(exc))
        except ValidationError as exc:  # a command-line value that a config model refuses
            _fail("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']} (got {e['input']!r})"
                            for e in exc.errors()))

    return wrapper


def _fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def _override(model, field: str, *names: str, **extra):
    """An option that overrides config field ``field`` of ``model``: its help text is the
    field's description and default, so the command line and the config never disagree."""
    return typer.Option(None, *names, help=_field_help(model, field), **extra)


def _field_help(model, field: str) -> str:
    info = model.model_fields[field]
    default = info.get_default(call_default_factory=True)
    text = f"{info.description or field.replace('_', ' ')} (config default: {default})"
    return text.replace("[", "\\[")


def _data_config(source: str, format: Optional[str], items: Optional[Path],
                 kcore: Optional[int]) -> DataConfig:
    return DataConfig(source=source, format=format or "auto", items=items, kcore=kcore)


@data_app.command("prepare")
@_friendly
def data_prepare(
    source: str = typer.Argument("default", help="'default', a data folder or a file"),
    out: Path = typer.Option(_DEFAULT_RUN.dataset, help="artifact folder to write"),
    format: Optional[str] = _override(DataConfig, "format"),
    items: Optional[Path] = typer.Option(None, help=".item (P5/RecBole) or meta (Amazon) file"),
    kcore: Optional[int] = _override(DataConfig, "kcore", min=0),
    force: bool = typer.Option(False, help="rebuild even if up to date, and replace a folder "
                               "that is not a dataset artifact"),
) -> None:
    """Read a dataset in any supported format and write the canonical artifact."""
    from .api import prepare_data

    result = prepare_data(_data_config(source, format, items, kcore), out, force=force)
    state = "up to date" if result.skipped else f"written in {result.seconds:.1f} s"
    typer.echo(f"dataset {result.path}: {state} {result.counts or ''}".rstrip())


@data_app.command("stats")
@_friendly
def data_stats(
    source: str = typer.Argument("default", help="'default', a data folder, file or artifact"),
    format: Optional[str] = _override(DataConfig, "format"),
    items: Optional[Path] = typer.Option(None, help=".item (P5/RecBole) or meta (Amazon) file"),
    kcore: Optional[int] = _override(DataConfig, "kcore", min=0),
) -> None:
    """Print users, items, interactions and sequence-length statistics."""
    from .api import read_dataset

    dataset = read_dataset(source, format=format or "auto", items=items, kcore=kcore)
    s = dataset.stats()
    typer.echo(f"dataset       {dataset.name}")
    typer.echo(f"users         {s.users}")
    typer.echo(f"items         {s.items}")
    typer.echo(f"interactions  {s.interactions}")
    typer.echo(f"per user      min {s.min_length}, median {s.median_length:g}, "
               f"mean {s.mean_length:.2f}, max {s.max_length}")
    typer.echo(f"density       {s.density:.6f}")


@app.command("tokenize")
@_friendly
def tokenize_cmd(
    dataset: Path = typer.Argument(..., help="dataset artifact folder (from `di data prepare`)"),
    out: Path = typer.Option(_DEFAULT_RUN.sids, help="artifact folder to write"),
    config: Optional[Path] = typer.Option(None, "--config", "-c",
                                          help="run config whose \\[tokenize] table is used"),
    quantizer: Optional[str] = _override(TokenizeConfig, "quantizer"),
    levels: Optional[int] = _override(TokenizeConfig, "levels"),
    codebook_size: Optional[int] = _override(TokenizeConfig, "codebook_size"),
    balanced: Optional[bool] = _override(TokenizeConfig, "balanced_last_level",
                                         "--balanced/--no-balanced"),
    interests: Optional[str] = _override(TokenizeConfig, "interests", metavar="DIR"),
    interest_mode: Optional[str] = _override(TokenizeConfig, "interest_mode"),
    interest_labels: Optional[str] = _override(TokenizeConfig, "interest_labels"),
    interest_weight: Optional[float] = _override(TokenizeConfig, "interest_weight"),
    max_interests: Optional[int] = _override(TokenizeConfig, "max_interests"),
    image_weight: Optional[float] = _override(TokenizeConfig, "image_weight"),
    collab_weight: Optional[float] = _override(TokenizeConfig, "collab_weight"),
    allow_id_only: Optional[bool] = _override(TokenizeConfig, "allow_id_only",
                                              "--allow-id-only/--no-allow-id-only"),
    second: bool = typer.Option(False, "--second", help="the config's \\[tokenize.second] "
                                "view instead (written to sids-second unless --out is given)"),
    force: bool = typer.Option(False, help="rebuild even if up to date, and replace a folder "
                               "that is not a sids artifact"),
) -> None:
    """Embed item texts (with mined interests, given --interests) and quantize them into
    collision-free semantic IDs."""
    from .api import as_config, tokenize_items

    cfg = as_config(config).tokenize
    if second:
        cfg = cfg.second_view()
        if cfg is None:
            raise DeepInterestError("--second: the config has no [tokenize.second] table")
        out = _DEFAULT_RUN.second_sids if out == _DEFAULT_RUN.sids else out
    overrides = {"quantizer": quantizer, "levels": levels, "codebook_size": codebook_size,
                 "balanced_last_level": balanced, "interests": interests,
                 "interest_mode": interest_mode, "interest_labels": interest_labels,
                 "interest_weight": interest_weight, "max_interests": max_interests,
                 "image_weight": image_weight, "collab_weight": collab_weight,
                 "allow_id_only": allow_id_only}
    for key, value in overrides.items():
        if value is not None:
            setattr(cfg, key, value)
    # 'mine' names the interests folder of the run the dataset belongs to (its sibling)
    result = tokenize_items(dataset, out, cfg, force=force)
    state = "up to date" if result.skipped else f"written in {result.seconds:.1f} s"
    typer.echo(f"sids {result.path}: {state}")
    typer.echo((out / "stats.json").read_text(encoding="utf-8").strip())


def _run_config(config: Optional[Path], workdir: Optional[str]):
    """The config given, else the one `di run` saved in ``workdir`` (so a run folder
    is served and evaluated as it was trained, RL included), else the defaults."""
    from .api import as_config
    from .pipeline import saved_config

    if config is None and workdir:
        config = saved_config(workdir)
    cfg = as_config(config)
    if workdir is not None:  # a str, so that an empty value is seen (Path("") is ".")
        cfg.workdir = workdir
    return cfg


_WORKDIR = typer.Option(None, help="run folder holding dataset/ and sids/ (default: config's)")
_CONFIG = typer.Option(None, "--config", "-c", help="TOML or YAML run config")


_MINE_SUBCOMMANDS = {
    "report": "Usage: di mine report DIR\n\n  Print the report of the interests artifact in DIR: "
              "per miner, items, answers, failures,\n  tokens, dollars, latency, descriptors "
              "per item, agreement and positive-label rate\n  (each column explained below "
              "the table).",
    "merge": "Usage: di mine merge DATASET SHARD_DIR... --out DIR [--force]\n\n  Join the "
             "interests artifacts of a run's shards (`di mine --shard I/N`) into one\n  "
             "artifact in DIR, identical to what one run over every item writes.",
}


@app.command("mine", context_settings={"help_option_names": []})
@_friendly
def mine_cmd(
    ctx: typer.Context,
    show_help: bool = typer.Option(False, "--help", "-h", help="show this message (or, after "
                                   "report or merge, that subcommand's) and exit"),
    args: Optional[list[str]] = typer.Argument(
        None, help="DATASET (a dataset artifact, 'default' or a data source; default: "
        "'default'); or `report DIR` to print an interests artifact's report; or "
        "`merge DATASET SHARD...` to join the shards of a run into --out"),
    out: Path = typer.Option(_DEFAULT_RUN.interests, help="artifact folder to write"),
    config: Optional[Path] = typer.Option(None, "--config", "-c",
                                          help="run config whose \\[mine] table is used"),
    backend: Optional[str] = typer.Option(None, help="mine with this one registered miner "
                                          "instead of the config's"),
    model: Optional[str] = typer.Option(None, help="the miner's model option"),
    base_url: Optional[str] = typer.Option(None, help="the miner's base_url option "
                                           "(OpenAI-compatible servers)"),
    limit: Optional[int] = _override(MineConfig, "limit", min=1),
    budget: Optional[float] = _override(MineConfig, "budget", min=0.0),
    shard: Optional[str] = _override(MineConfig, "shard"),
    force: bool = typer.Option(False, help="rebuild even if up to date, and replace a folder "
                               "that is not an interests artifact"),
) -> None:
    """Ask miners why people buy each item; write the interests artifact (or print a report)."""
    from .api import mine_interests, mining_report

    args = list(args or [])
    if show_help:  # `di mine report --help` is the subcommand's help, not this command's
        if args and args[0] in _MINE_SUBCOMMANDS:
            typer.echo(_MINE_SUBCOMMANDS[args[0]])
        else:
            text = ctx.get_help()  # rich prints it itself and returns ""
            if text:
                typer.echo(text)
        return
    if args[:1] == ["report"]:
        if len(args) != 2:
            raise DeepInterestError("usage: di mine report DIR")
        typer.echo(mining_report(args[1]))
        return
    if args[:1] == ["merge"]:
        _merge(args[1:], out, force)
        return
    if len(args) > 1:
        raise DeepInterestError(f"one DATASET expected, got {args}")
    cfg = _mine_config(config, backend, model, base_url, limit, budget)
    if shard is not None:
        cfg.shard = shard
    dataset = _dataset_for(args[0] if args else "default", out.parent / "dataset")
    result = mine_interests(dataset, out, cfg, force=force)
    state = "up to date" if result.skipped else f"written in {result.seconds:.1f} s"
    typer.echo(f"interests {result.path}: {state} {result.counts or ''}".rstrip())
    typer.echo(mining_report(result.path))


def _merge(args: list[str], out: Path, force: bool) -> None:
    from .api import merge_shards, mining_report

    if len(args) < 2:
        raise DeepInterestError("usage: di mine merge DATASET SHARD_DIR... --out DIR")
    result = merge_shards(args[0], args[1:], out, force=force)
    typer.echo(f"interests {result.path}: merged {len(args) - 1} shards {result.counts}")
    typer.echo(mining_report(result.path))


def _mine_config(config: RunConfig | str | Path | None, backend: str | None, model: str | None,
                 base_url: str | None, limit: int | None, budget: float | None) -> MineConfig:
    from .api import as_config
    from .config import MinerSpec

    cfg = as_config(config).mine
    if backend is not None or model is not None or base_url is not None:
        spec = MinerSpec(backend=backend) if backend else cfg.miners[0]
        options = dict(spec.options)
        options.update({k: v for k, v in (("model", model), ("base_url", base_url)) if v})
        cfg.miners = [spec.model_copy(update={"options": options})]
    if limit is not None:
        cfg.limit = limit
    if budget is not None:
        cfg.budget = budget
    return cfg


def _dataset_for(source: str, prepared: Path) -> Path:
    """``source`` when it is a dataset artifact, else the artifact prepared from it."""
    from .api import prepare_data
    from .data.model import INFO_FILE

    if (Path(source) / INFO_FILE).is_file():
        return Path(source)
    result = prepare_data(DataConfig(source=source), prepared, keep_other=True)
    typer.echo(f"dataset {result.path}: {'up to date' if result.skipped else 'written'}")
    return result.path


@app.command("train")
@_friendly
def train_cmd(
    stage: str = typer.Option("sft", help="training stage: sft (supervised, writes "
                              "<workdir>/sft), rl (GRPO from sft/best, writes <workdir>/rl) "
                              "or sasrec (\\[hybrid]'s SASRec, writes <workdir>/sasrec)"),
    config: Optional[Path] = _CONFIG,
    workdir: Optional[str] = _WORKDIR,
    backbone: Optional[str] = _override(TrainConfig, "backbone"),
    epochs: Optional[int] = typer.Option(
        None, help=f"sft: {_field_help(SFTConfig, 'epochs')}; rl: "
        f"{_field_help(RLConfig, 'epochs')}; sasrec: its upper bound"),
    force: bool = typer.Option(False, help="replace an <workdir>/sft (or rl, sasrec) that is "
                               "not a folder of that stage"),
) -> None:
    """Train the generative backbone on the run's SIDs: SFT, then GRPO (--stage rl); or
    the SASRec whose lists \\[hybrid] merges in (--stage sasrec)."""
    from .api import train_rl, train_sasrec, train_sft

    # each stage's call and the config section its --epochs sets
    stages = {"sft": (train_sft, lambda c: c.train.sft), "rl": (train_rl, lambda c: c.train.rl),
              "sasrec": (train_sasrec, lambda c: c.hybrid.sasrec)}
    if stage not in stages:
        raise DeepInterestError(f"training stage {stage!r} is not available; use --stage sft, "
                                "rl or sasrec")
    cfg = _run_config(config, workdir)
    if backbone is not None:
        cfg.train.backbone = backbone
    call, section = stages[stage]
    if epochs is not None:
        section(cfg).epochs = epochs
    result = call(cfg, force=force)
    if os.environ.get("RANK", "0") != "0":  # under torchrun, rank 0 reports for all
        return
    state = "up to date" if result.skipped else f"done in {result.seconds:.1f} s"
    typer.echo(f"[{result.stage}] {state} -> {result.path}")
    _print_metrics(result.path / "metrics.json")


_CHECKPOINT = typer.Option(None, help="a best/ or last/ folder of sft/ or rl/ (default: "
                           "<workdir>/rl/best when \\[train.rl] is enabled, else "
                           "<workdir>/sft/best)")


@app.command("eval")
@_friendly
def eval_cmd(
    config: Optional[Path] = _CONFIG,
    workdir: Optional[str] = _WORKDIR,
    checkpoint: Optional[Path] = _CHECKPOINT,
    beam: Optional[int] = _override(EvalConfig, "beam"),
) -> None:
    """HR@5/10 and NDCG@5/10 of a checkpoint on validation and test (writes <workdir>/eval)."""
    from .api import evaluate_run

    cfg = _run_config(config, workdir)
    if beam is not None:
        cfg.eval.beam = beam
    result = evaluate_run(cfg, checkpoint=checkpoint)
    _print_metrics(result.path / "metrics.json")


@app.command("recommend")
@_friendly
def recommend_cmd(
    user: str = typer.Option(..., "--user", help="user id as in the dataset"),
    k: int = typer.Option(10, "-k", min=1, help="how many items"),
    config: Optional[Path] = _CONFIG,
    workdir: Optional[str] = _WORKDIR,
    checkpoint: Optional[Path] = _CHECKPOINT,
) -> None:
    """Top-K next items for a user, with titles and scores (log-probabilities)."""
    from .api import recommend

    cfg = _run_config(config, workdir)
    rows = recommend(user, cfg, k=k, checkpoint=checkpoint)
    served = checkpoint or RunLayout(cfg.workdir).final_checkpoint(cfg.train.rl.enabled)
    typer.echo(f"top {k} for {user} from {served}; score = log-probability of the item's "
               "semantic ID (higher is better), sid = its codes")
    typer.echo(f"{'rank':>4}  {'score':>8}  {'item':<12} {'sid':<16} title")
    for row in rows:
        sid = "-".join(str(c) for c in row.sid)
        typer.echo(f"{row.rank:>4}  {row.score:8.3f}  {row.item:<12} {sid:<16} "
                   f"{row.title[:70]}")


@app.command("run")
@_friendly
def run_cmd(
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="TOML or YAML run config"),
    workdir: Optional[str] = typer.Option(None, help="override the config's workdir"),
) -> None:
    """Run the whole chain (default: the embedded dataset) and report each stage."""
    from .api import run

    cfg = _run_config(config, workdir)

    def report(stage) -> None:
        state = "skipped (up to date)" if stage.skipped else f"done in {stage.seconds:.1f} s"
        typer.echo(f"[{stage.stage}] {state} -> {stage.path} {stage.counts or ''}".rstrip())

    result = run(cfg, on_stage=report)
    run = RunLayout(result.workdir)
    _print_metrics(run.baseline / "metrics.json")
    if cfg.train.rl.enabled and (run.sft / "metrics.json").is_file():  # SFT beside RL
        _print_metrics(run.sft / "metrics.json", label="sft/best before RL")
    if (run.eval / "metrics.json").is_file():
        _print_metrics(run.eval / "metrics.json")
    if result.missing:
        typer.echo("not in this release yet: " + ", ".join(result.missing))


def _print_metrics(path: Path, label: str | None = None) -> None:
    import json

    data = json.loads(path.read_text(encoding="utf-8"))
    users = data.get("users", {}).get("valid")
    note = f"; validation on {users} users" if label and users else ""
    if hybrid := data.get("hybrid"):  # say what was scored: the model's lists with SASRec's
        note += ("; merged with SASRec by a reranker fitted on validation"
                 if hybrid["rule"] == "learned" else
                 f"; merged with SASRec by {hybrid['rule']}, weight {hybrid['weight']:g}")
    typer.echo(f"{label or data.get('model', path.parent.name)} ({path}{note}):")
    for split in ("valid", "test"):
        cells = "  ".join(f"{k} {v:.4f}" for k, v in data[split].items())
        typer.echo(f"  {split:<5}  {cells}")


@app.command("version")
def version() -> None:
    """Print the package version."""
    from .version import __version__

    typer.echo(__version__)


def main() -> None:  # pragma: no cover - console entry
    sys.exit(app())
