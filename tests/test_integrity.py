"""An artifact is used only while its files are those its manifest fingerprinted."""

import json

import pytest
from typer.testing import CliRunner

from deepinterest.cli import app

runner = CliRunner()


@pytest.fixture
def run(tmp_path, tiny_config):
    cfg = tiny_config(tmp_path)
    first = runner.invoke(app, ["run", "--config", str(cfg)])
    assert first.exit_code == 0, first.output
    return cfg, tmp_path / "work"


def test_a_truncated_interests_file_is_mined_again(run):
    cfg, work = run
    items = work / "interests" / "items.jsonl"
    whole = items.read_text()
    items.write_text(whole[: len(whole) // 2])
    again = runner.invoke(app, ["run", "--config", str(cfg)])
    assert again.exit_code == 0, again.output
    assert "[mine] done" in again.output

    def descriptors(text):  # latencies differ between two runs; the answers do not
        return [(row["item"], row["descriptors"]) for row in map(json.loads, text.splitlines())]

    assert descriptors(items.read_text()) == descriptors(whole)


def test_damaged_weights_are_trained_again_and_then_up_to_date(run):
    cfg, work = run
    weights = work / "sft" / "best" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.warns(UserWarning, match="training starts over"):
        again = runner.invoke(app, ["run", "--config", str(cfg)])
    assert again.exit_code == 0, again.output
    third = runner.invoke(app, ["run", "--config", str(cfg)])
    assert "[train-sft] skipped (up to date)" in third.output


def test_a_file_where_a_stage_folder_goes_is_a_message(run):
    cfg, work = run
    import shutil

    shutil.rmtree(work / "sft")
    (work / "sft").write_text("mine")
    result = runner.invoke(app, ["run", "--config", str(cfg)])
    assert result.exit_code == 2 and "is a file, not a folder" in result.output
    assert (work / "sft").read_text() == "mine"


def test_a_users_file_inside_an_artifact_neither_rebuilds_it_nor_is_lost(run):
    cfg, work = run
    note = work / "sids" / "my-notes.txt"
    note.write_text("mine")
    again = runner.invoke(app, ["run", "--config", str(cfg)])
    assert again.exit_code == 0 and "[tokenize] skipped" in again.output, again.output
    assert note.read_text() == "mine"
