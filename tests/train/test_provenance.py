"""A checkpoint is evaluated only with the run it was trained in; sft/last is evaluated as
itself; a training folder whose last/ cannot be resumed starts over instead of failing."""

import json
import shutil

import pytest
import torch
from typer.testing import CliRunner

from deepinterest.cli import app
from deepinterest.data.model import load_dataset
from deepinterest.train.sft import LAST, STATE_FILE
from deepinterest.train.checkpoints import load_catalog, load_checkpoint

runner = CliRunner()

TINY = """
workdir = "{work}"
[data.synthetic]
n_items = 120
n_users = 100
[tokenize]
levels = 2
codebook_size = 16
balanced_last_level = true  # no collisions: both runs get the same catalogue shape
seed = {seed}
cache_dir = "{cache}"
[train]
options = {{ d_model = 16, encoder_layers = 1, decoder_layers = 1, heads = 2, d_kv = 8, d_ff = 32 }}
[train.sft]
epochs = 2
batch_size = 64
warmup_steps = 0
eval_users = 30
threads = 1
[eval]
beam = 10
"""


def _config(root, name: str, *, seed: int = 0, epochs: int = 2):
    path = root / f"{name}.toml"
    text = TINY.format(work=root / name, seed=seed, cache=root / "cache")
    path.write_text(text.replace("epochs = 2", f"epochs = {epochs}"))
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two runs on the same dataset whose SIDs differ (another quantizer seed), same shape."""
    root = tmp_path_factory.mktemp("prov")
    for name, seed in (("a", 0), ("b", 1)):
        result = runner.invoke(app, ["run", "--config", str(_config(root, name, seed=seed))])
        assert result.exit_code == 0, result.output
    return root


def test_the_two_runs_share_a_catalogue_shape_but_not_their_sids(runs):
    a, b = (json.loads((runs / n / "sft" / "best" / "backbone.json").read_text())
            for n in ("a", "b"))
    assert a["catalog"] == b["catalog"]  # the shape check alone would accept either
    assert (runs / "a" / "sids" / "sids.jsonl").read_text() != \
        (runs / "b" / "sids" / "sids.jsonl").read_text()


def test_eval_and_recommend_refuse_a_checkpoint_from_another_run(runs):
    other = runs / "b" / "sft" / "best"
    before = (runs / "a" / "eval" / "metrics.json").read_text()
    result = runner.invoke(app, ["eval", "--config", str(runs / "a.toml"),
                                 "--checkpoint", str(other)])
    assert result.exit_code == 2, result.output
    assert "trained on another sids artifact" in result.output
    assert (runs / "a" / "eval" / "metrics.json").read_text() == before  # not overwritten
    user = load_dataset(runs / "a" / "dataset").users[0].id
    result = runner.invoke(app, ["recommend", "--config", str(runs / "a.toml"), "--user", user,
                                 "--checkpoint", str(other)])
    assert result.exit_code == 2 and "trained on another sids artifact" in result.output


def test_a_copied_checkpoint_carries_its_provenance(runs, tmp_path):
    copy = tmp_path / "moved"
    shutil.copytree(runs / "b" / "sft" / "best", copy)  # outside any stage folder
    result = runner.invoke(app, ["eval", "--config", str(runs / "a.toml"),
                                 "--checkpoint", str(copy)])
    assert result.exit_code == 2 and "trained on another sids artifact" in result.output


def test_eval_of_last_evaluates_last(runs):
    work = runs / "a"
    result = runner.invoke(app, ["eval", "--config", str(runs / "a.toml"),
                                 "--checkpoint", str(work / "sft" / LAST)])
    assert result.exit_code == 0, result.output
    metrics = json.loads((work / "eval" / "metrics.json").read_text())
    assert metrics["checkpoint"].endswith(f"sft/{LAST}")
    dataset = load_dataset(work / "dataset")
    model = load_checkpoint(work / "sft" / LAST, load_catalog(dataset, work / "sids"))
    state = torch.load(work / "sft" / LAST / STATE_FILE, weights_only=False)["model"]
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())
    back = runner.invoke(app, ["eval", "--config", str(runs / "a.toml")])  # best again
    assert back.exit_code == 0
    assert json.loads((work / "eval" / "metrics.json").read_text())["checkpoint"].endswith(
        "sft/best")


@pytest.mark.parametrize("damage", ["garbage", "other-config"])
def test_a_last_that_cannot_be_resumed_restarts_cleanly(runs, tmp_path, damage):
    work = tmp_path / "w"
    shutil.copytree(runs / "a", work, ignore=shutil.ignore_patterns("eval", "baseline"))
    cfg = tmp_path / "c.toml"
    cfg.write_text(_config(runs, "a").read_text().replace(str(runs / "a"), str(work)))
    (work / "sft" / "manifest.json").unlink()  # an unfinished stage: it will resume
    state = work / "sft" / LAST / STATE_FILE
    if damage == "garbage":
        state.write_bytes(b"not a checkpoint")
    else:  # the last/ of a run with another trainer config, as two racing runs left it
        payload = torch.load(state, weights_only=False)
        payload["config"]["lr"] = 0.5
        torch.save(payload, state)
    with pytest.warns(UserWarning, match="training starts over"):
        result = runner.invoke(app, ["train", "--config", str(cfg)])
    assert result.exit_code == 0, result.output
    assert json.loads((work / "sft" / "metrics.json").read_text())["epochs_run"] == 2
    again = runner.invoke(app, ["train", "--config", str(cfg)])
    assert again.exit_code == 0 and "up to date" in again.output


def test_a_checkpoint_that_records_no_provenance_is_refused(runs, tmp_path):
    bare = tmp_path / "bare"
    shutil.copytree(runs / "a" / "sft" / "best", bare)
    (bare / "sft.json").unlink()
    result = runner.invoke(app, ["eval", "--config", str(runs / "a.toml"),
                                 "--checkpoint", str(bare)])
    assert result.exit_code == 2 and "records no dataset or SIDs fingerprint" in result.output


def test_an_unfinished_sft_is_not_served_or_evaluated(runs, tmp_path):
    from deepinterest.api import load_recommender
    from deepinterest.errors import DeepInterestError

    work = tmp_path / "killed"
    shutil.copytree(runs / "a", work)
    (work / "sft" / "manifest.json").unlink()  # as a killed training leaves it
    cfg = tmp_path / "killed.toml"
    cfg.write_text((runs / "a.toml").read_text().replace(str(runs / "a"), str(work)))
    with pytest.raises(DeepInterestError, match="has not finished"):
        load_recommender(cfg)
    user = load_dataset(work / "dataset").users[0].id
    for args in (["eval"], ["recommend", "--user", user]):
        result = runner.invoke(app, [*args, "--config", str(cfg)])
        assert result.exit_code == 2 and "has not finished" in result.output, result.output


def test_serving_an_rl_run_that_has_no_rl_checkpoint_points_to_rl_training(runs):
    from deepinterest.api import load_recommender
    from deepinterest.config import load_config
    from deepinterest.errors import DeepInterestError

    cfg = load_config(runs / "a.toml")
    cfg.train.rl.enabled = True
    with pytest.raises(DeepInterestError, match="train_rl"):
        load_recommender(cfg)
