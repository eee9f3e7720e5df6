import json

import pytest
from typer.testing import CliRunner

from deepinterest.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_config):
    root = tmp_path_factory.mktemp("chain")
    cfg = tiny_config(root)
    result = runner.invoke(app, ["run", "--config", str(cfg)])
    assert result.exit_code == 0, result.output
    return root, cfg, result.output


def test_run_chains_every_available_stage(tiny_run):
    root, _, output = tiny_run
    work = root / "work"
    for stage in ("data", "mine", "tokenize", "train-sft", "eval", "baseline"):
        assert f"[{stage}] done" in output
    assert "[train-rl]" not in output and "not in this release yet" not in output
    metrics = json.loads((work / "eval" / "metrics.json").read_text())
    assert metrics["users"] == {"valid": 150, "test": 150} and metrics["beam"] == 20
    assert all(0.0 <= v <= 1.0 for v in metrics["test"].values())
    sft = json.loads((work / "sft" / "metrics.json").read_text())
    assert sft["epochs_run"] == 2 and sft["users"]["valid"] == 40
    assert (work / "sft" / "best" / "backbone.json").is_file()


def test_rerun_skips_and_eval_command_reuses(tiny_run):
    root, cfg, _ = tiny_run
    again = runner.invoke(app, ["run", "--config", str(cfg)])
    assert "[train-sft] skipped" in again.output and "[eval] skipped" in again.output
    result = runner.invoke(app, ["eval", "--config", str(cfg)])
    assert result.exit_code == 0 and "test" in result.output


def test_recommend_lists_k_distinct_items_with_titles(tiny_run):
    root, cfg, _ = tiny_run
    users = (root / "work" / "dataset" / "users.jsonl").read_text().splitlines()
    user = json.loads(users[0])["id"]
    result = runner.invoke(app, ["recommend", "--config", str(cfg), "--user", user, "-k", "5"])
    assert result.exit_code == 0, result.output
    head, columns, *lines = result.output.strip().splitlines()
    assert "sft/best" in head and "log-probability" in head  # which model, what the score is
    assert columns.split() == ["rank", "score", "item", "sid", "title"]
    assert len(lines) == 5 and [int(line.split()[0]) for line in lines] == [1, 2, 3, 4, 5]
    items = [line.split()[2] for line in lines]
    assert len(set(items)) == 5 and all(i.startswith("I") for i in items)
    scores = [float(line.split()[1]) for line in lines]
    assert scores == sorted(scores, reverse=True)


def test_unknown_user_and_stage_are_clear_errors(tiny_run):
    _, cfg, _ = tiny_run
    result = runner.invoke(app, ["recommend", "--config", str(cfg), "--user", "nobody"])
    assert result.exit_code == 2 and "unknown user 'nobody'" in result.output
    result = runner.invoke(app, ["train", "--config", str(cfg), "--stage", "ppo"])
    assert result.exit_code == 2 and "use --stage sft, rl or sasrec" in result.output


def test_di_train_under_torchrun_writes_one_finished_artifact(tiny_run, tmp_path, run_proc):
    """Two gloo ranks run `di train`; rank 0 alone clears and writes, and the result is reusable."""
    import os
    import shutil
    import socket
    import sys

    root, cfg, _ = tiny_run
    work = tmp_path / "work"
    for part in ("dataset", "sids"):
        shutil.copytree(root / "work" / part, work / part)
    (work / "sft").mkdir()  # a training folder of ours, started with another config
    (work / "sft" / "stage.json").write_text('{"stage": "train-sft", "config": "other"}')
    (work / "sft" / "stale.txt").write_text("from another config")  # must be cleared once
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
           "--master_addr", "127.0.0.1", "--master_port", str(port),
           "-m", "deepinterest", "train", "--config", str(cfg), "--workdir", str(work), "--epochs", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = run_proc(cmd, env=env, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stdout.count("[train-sft] done") == 1  # rank 0 reports for both
    sft = work / "sft"
    assert not (sft / "stale.txt").exists()
    assert json.loads((sft / "metrics.json").read_text())["epochs_run"] == 1
    assert (sft / "manifest.json").is_file() and (sft / "best" / "backbone.json").is_file()
    again = runner.invoke(app, ["train", "--config", str(cfg), "--workdir", str(work), "--epochs", "1"])
    assert again.exit_code == 0 and "[train-sft] up to date" in again.output


def test_init_from_codebooks_uses_the_run_quantizer_and_refuses_other_backbones(tiny_run):
    import torch

    from deepinterest.backbones.t5 import T5Backbone
    from deepinterest.data.model import load_dataset
    from deepinterest.errors import DeepInterestError
    from deepinterest.train.checkpoints import load_catalog
    from deepinterest.train.stage import init_from_codebooks

    root, _, _ = tiny_run
    sids = root / "work" / "sids"
    catalog = load_catalog(load_dataset(root / "work" / "dataset"), sids)
    model = T5Backbone(catalog=catalog, d_model=32, encoder_layers=1, decoder_layers=1, heads=2,
                       d_kv=16, d_ff=64)
    before = model.item_embeddings(torch.arange(len(catalog.item_ids))).detach()
    init_from_codebooks(model, sids)
    after = model.item_embeddings(torch.arange(len(catalog.item_ids))).detach()
    first = model.model.shared.weight[int(catalog.offsets[0]):][: catalog.sizes[0]].detach()
    assert not torch.allclose(before, after)
    torch.testing.assert_close(first.pow(2).mean(), torch.tensor(1.0))
    with pytest.raises(DeepInterestError, match="cannot start from codebooks"):
        init_from_codebooks(object(), sids)


def test_eval_takes_a_checkpoint_outside_a_stage_folder(tiny_run, tmp_path):
    import shutil

    root, cfg, _ = tiny_run
    loose = tmp_path / "elsewhere" / "best"
    shutil.copytree(root / "work" / "sft" / "best", loose)  # no manifest.json beside it
    work = tmp_path / "work"
    for part in ("dataset", "sids"):
        shutil.copytree(root / "work" / part, work / part)
    result = runner.invoke(app, ["eval", "--config", str(cfg), "--workdir", str(work),
                                 "--checkpoint", str(loose)])
    assert result.exit_code == 0, result.output
    ours = json.loads((work / "eval" / "metrics.json").read_text())
    theirs = json.loads((root / "work" / "eval" / "metrics.json").read_text())
    assert ours["test"] == theirs["test"]  # the same weights score the same
    (work / "sids" / "manifest.json").unlink()
    missing = runner.invoke(app, ["eval", "--config", str(cfg), "--workdir", str(work),
                                  "--checkpoint", str(loose)])
    assert missing.exit_code == 2 and "no manifest.json" in missing.output
