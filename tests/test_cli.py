import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from deepinterest.cli import app

runner = CliRunner()
BEAUTY = Path(__file__).resolve().parents[2] / "shared" / "data" / "amazon-beauty"


def _p5(folder: Path) -> Path:
    folder.mkdir()
    (folder / "user_sequence.txt").write_text("u1 A B C D\nu2 B C D\nu3 A C\n")
    (folder / "x.item").write_text("item_id:token\ttitle:token\nA\ta\nB\tb\nC\tc\nD\td\n")
    return folder


def test_data_stats_on_a_p5_folder(tmp_path):
    result = runner.invoke(app, ["data", "stats", str(_p5(tmp_path / "d"))])
    assert result.exit_code == 0, result.output
    lines = dict(line.split(None, 1) for line in result.output.splitlines())
    assert (lines["users"], lines["items"], lines["interactions"]) == ("3", "4", "9")
    assert lines["per"] == "user      min 2, median 3, mean 3.00, max 4"


def test_prepare_then_stats_from_the_artifact(tmp_path):
    out = tmp_path / "art"
    result = runner.invoke(app, ["data", "prepare", str(_p5(tmp_path / "d")), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "written" in result.output
    again = runner.invoke(app, ["data", "prepare", str(tmp_path / "d"), "--out", str(out)])
    assert "up to date" in again.output
    stats = runner.invoke(app, ["data", "stats", str(out)])
    assert "interactions  9" in stats.output


def test_bad_input_exits_2_and_writes_nothing(tmp_path):
    folder = _p5(tmp_path / "d")
    (folder / "user_sequence.txt").write_text("u1 A B\nu2 A NOPE\n")
    out = tmp_path / "art"
    result = runner.invoke(app, ["data", "prepare", str(folder), "--out", str(out)])
    assert result.exit_code == 2
    assert "user_sequence.txt:2" in result.output and "NOPE" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]  # no artifact, no temp folder


# The default chain with a small catalogue and a tiny model, so the test takes seconds.
SMALL = """
[data.synthetic]
n_items = 120
n_users = 150
seed = {seed}
[tokenize]
cache_dir = "{cache}"
[train]
options = {{ d_model = 32, encoder_layers = 1, decoder_layers = 1, heads = 2, d_kv = 16, d_ff = 64 }}
[train.sft]
epochs = 1
threads = 1
"""


def _small(tmp_path: Path, seed: int = 0) -> Path:
    path = tmp_path / f"small-{seed}.toml"
    path.write_text(SMALL.format(seed=seed, cache=tmp_path / "cache"))
    return path


def test_run_default_chain_and_resume(tmp_path):
    work = tmp_path / "w"
    first = runner.invoke(app, ["run", "--config", str(_small(tmp_path)), "--workdir", str(work)])
    assert first.exit_code == 0, first.output
    assert "[data] done" in first.output and "not in this release yet" not in first.output
    assert "[train-rl]" not in first.output  # off unless [train.rl] enabled
    assert "[mine] done" in first.output
    assert "[train-sft] done" in first.output and "[eval] done" in first.output
    metrics = json.loads((work / "baseline" / "metrics.json").read_text())
    assert set(metrics["test"]) == {"hr@5", "hr@10", "ndcg@5", "ndcg@10"}
    assert metrics["users"]["test"] > 0 and 0 <= metrics["test"]["hr@10"] <= 1
    second = runner.invoke(app, ["run", "--config", str(_small(tmp_path)), "--workdir", str(work)])
    assert "[data] skipped" in second.output and "[baseline] skipped" in second.output


def test_run_rebuilds_when_the_config_changes(tmp_path):
    work = tmp_path / "w"
    runner.invoke(app, ["run", "--config", str(_small(tmp_path)), "--workdir", str(work)])
    result = runner.invoke(app, ["run", "--config", str(_small(tmp_path, seed=1)),
                                 "--workdir", str(work)])
    assert "[data] done" in result.output, result.output
    assert "[tokenize] done" in result.output and "[train-sft] done" in result.output


def test_run_bad_config_exits_2(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[eval]\nks = [0]\n")
    result = runner.invoke(app, ["run", "--config", str(cfg)])
    assert result.exit_code == 2 and "eval.ks" in result.output


@pytest.mark.skipif(not BEAUTY.is_dir(), reason=f"shared Beauty data not found at {BEAUTY}")
def test_beauty_stats():
    result = runner.invoke(app, ["data", "stats", str(BEAUTY)])
    assert result.exit_code == 0, result.output
    assert "users         22363" in result.output
    assert "items         12101" in result.output
    assert "interactions  198502" in result.output


def test_run_without_miners_skips_mining(tmp_path):
    cfg = _small(tmp_path)
    cfg.write_text(cfg.read_text() + "\n[mine]\nminers = []\n")
    work = tmp_path / "w"
    result = runner.invoke(app, ["run", "--config", str(cfg), "--workdir", str(work)])
    assert result.exit_code == 0, result.output
    assert "[mine]" not in result.output and not (work / "interests").exists()
    assert "[eval] done" in result.output
    none = runner.invoke(app, ["mine", str(work / "dataset"), "--config", str(cfg),
                               "--out", str(tmp_path / "i")])
    assert none.exit_code == 2 and "no miners configured" in none.output


# -- GRPO (`--stage rl`) on the small chain ----------------------------------------------

RL = """
[train.rl]
enabled = true
epochs = 1
batch_size = 64
group_size = 4
eval_users = 40
threads = 1
"""


@pytest.fixture(scope="module")
def rl_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("rl")
    cfg = root / "rl.toml"
    cfg.write_text(SMALL.format(seed=0, cache=root / "cache") + RL)
    result = runner.invoke(app, ["run", "--config", str(cfg), "--workdir", str(root / "w")])
    assert result.exit_code == 0, result.output
    return root, cfg, result.output


def test_run_with_rl_trains_from_sft_and_evaluates_the_rl_checkpoint(rl_run):
    root, cfg, output = rl_run
    work = root / "w"
    order = [output.index(f"[{s}] done") for s in ("train-sft", "train-rl", "eval")]
    assert "sft/best before RL" in output  # SFT's metrics are printed beside RL's
    assert order == sorted(order) and "not in this release yet" not in output
    assert json.loads((work / "run.json").read_text())["missing"] == []
    assert json.loads((work / "eval" / "metrics.json").read_text())["checkpoint"] == str(
        work / "rl" / "best")
    # mining ran, so the interests reach the rewards: the paper's composite is the default
    summary = json.loads((work / "rl" / "rl_result.json").read_text())
    scalars = summary["history"][0]["scalars"]
    assert {"reward", "reward/paper/exact", "reward/paper/quality", "zero_variance", "kl",
            "clip_fraction"} <= set(scalars)
    assert scalars["reward/paper/valid"] == 1.0  # constrained decoding: every SID is valid
    meta = json.loads((work / "rl" / "best" / "rl.json").read_text())
    assert set(meta["inputs"]) == {"dataset", "sids", "sft", "interests"}
    assert summary["valid_users"] == 40 and set(summary["start_valid"]) == set(summary["valid"])
    again = runner.invoke(app, ["run", "--config", str(cfg), "--workdir", str(work)])
    assert "[train-sft] skipped" in again.output and "[train-rl] skipped" in again.output
    # The run folder remembers its config: served from the RL model without --config.
    user = json.loads((work / "dataset" / "users.jsonl").read_text().splitlines()[0])["id"]
    served = runner.invoke(app, ["recommend", "--workdir", str(work), "--user", user, "-k", "3"])
    assert served.exit_code == 0 and "rl/best" in served.output.splitlines()[0], served.output


def test_train_stage_rl_command_reproduces_the_run_and_serves_its_checkpoint(rl_run, tmp_path):
    import shutil

    root, cfg, _ = rl_run
    work = tmp_path / "w"
    for part in ("dataset", "interests", "sids", "sft", "sasrec"):  # [hybrid]: on by default
        shutil.copytree(root / "w" / part, work / part)
    result = runner.invoke(app, ["train", "--stage", "rl", "--config", str(cfg),
                                 "--workdir", str(work)])
    assert result.exit_code == 0, result.output
    assert "[train-rl] done" in result.output
    ours = json.loads((work / "rl" / "metrics.json").read_text())
    theirs = json.loads((root / "w" / "rl" / "metrics.json").read_text())
    assert ours["test"] == theirs["test"]  # beam rollouts are deterministic
    evaluated = runner.invoke(app, ["eval", "--config", str(cfg), "--workdir", str(work),
                                    "--checkpoint", str(work / "rl" / "last")])
    assert evaluated.exit_code == 0, evaluated.output
    user = json.loads((work / "dataset" / "users.jsonl").read_text().splitlines()[0])["id"]
    recs = runner.invoke(app, ["recommend", "--config", str(cfg), "--workdir", str(work),
                               "--user", user, "-k", "3", "--checkpoint",
                               str(work / "rl" / "best")])
    head, _, *rows = recs.output.strip().splitlines()
    assert recs.exit_code == 0 and len(rows) == 3 and "rl/best" in head  # the RL model served


def test_train_stage_rl_needs_a_finished_sft_of_this_run(rl_run, tmp_path):
    import shutil

    root, cfg, _ = rl_run
    work = tmp_path / "w"
    for part in ("dataset", "sids"):
        shutil.copytree(root / "w" / part, work / part)
    args = ["train", "--stage", "rl", "--config", str(cfg), "--workdir", str(work)]
    none = runner.invoke(app, args)
    assert none.exit_code == 2 and "run `di train --stage sft` first" in none.output
    shutil.copytree(root / "w" / "sft" / "best", work / "sft" / "best")
    unfinished = runner.invoke(app, args)
    assert unfinished.exit_code == 2 and "SFT has not finished" in unfinished.output
    (work / "sft" / "manifest.json").write_text(
        (root / "w" / "sft" / "manifest.json").read_text())
    sft_json = work / "sft" / "best" / "sft.json"
    meta = json.loads(sft_json.read_text())
    meta["inputs"]["sids"] = "0" * 64  # trained on other SIDs
    sft_json.write_text(json.dumps(meta))
    foreign = runner.invoke(app, args)
    assert foreign.exit_code == 2 and "another sids artifact" in foreign.output
    assert not (work / "rl").exists()


def test_train_stage_rl_refuses_a_users_rl_folder_and_keeps_files_beside_it(rl_run, tmp_path):
    import shutil

    root, cfg, _ = rl_run
    work = tmp_path / "w"
    for part in ("dataset", "interests", "sids", "sft"):
        shutil.copytree(root / "w" / part, work / part)
    (work / "rl").mkdir()
    (work / "rl" / "mine.txt").write_text("my results")
    (work / "notes.txt").write_text("my notes")
    args = ["train", "--stage", "rl", "--config", str(cfg), "--workdir", str(work)]
    refused = runner.invoke(app, args)
    assert refused.exit_code == 2 and "--force" in refused.output
    assert [p.name for p in (work / "rl").iterdir()] == ["mine.txt"]
    shutil.rmtree(work / "rl")
    done = runner.invoke(app, args)
    assert done.exit_code == 0, done.output
    assert (work / "notes.txt").read_text() == "my notes"
    assert {p.name for p in work.iterdir()} == {"dataset", "interests", "sids", "sft", "rl",
                                               "notes.txt"}


def test_help_lists_the_commands_in_pipeline_order():
    import click
    import typer

    group = typer.main.get_command(app)
    names = group.list_commands(click.Context(group))
    assert names == ["data", "mine", "tokenize", "train", "eval", "recommend", "run", "version"]
    out = CliRunner().invoke(app, ["--help"]).output
    assert [out.index(f" {name} ") for name in names] == sorted(out.index(f" {name} ")
                                                                 for name in names)
