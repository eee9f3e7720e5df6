"""The examples run as a user runs them: as scripts, on the embedded dataset."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def script(name: str, *args: str, env: dict | None = None) -> str:
    out = subprocess.run([sys.executable, str(EXAMPLES / name), *map(str, args)], cwd=ROOT,
                         capture_output=True, text=True, env={**os.environ, **(env or {})})
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


@pytest.fixture(scope="module")
def chain(tmp_path_factory, tiny_config):
    config = tiny_config(tmp_path_factory.mktemp("examples"))
    return config, script("python_api.py", config)


def test_python_api_runs_the_chain_then_skips_each_stage(chain):
    _, out = chain
    lines = out.splitlines()
    for stage in ("data", "mine", "tokenize", "train-sft", "eval", "baseline"):
        assert any(line.startswith(f"[{stage}] done") for line in lines), out
    skipped = [line.split()[0] for line in lines if "skipped (up to date)" in line]
    assert skipped == ["[data]", "[tokenize]", "[train-sft]", "[eval]"]
    assert "test metrics: {'hr@5'" in out and "most popular, validation:" in out


def test_serve_recommends_for_a_user_and_a_new_history(chain):
    config, _ = chain
    lines = script("serve.py", config).splitlines()
    assert lines[0].startswith("user ")
    ranks = [int(line.split()[0]) for line in lines[1:6]]
    assert ranks == [1, 2, 3, 4, 5]
    assert lines[6].startswith("for [") and lines[6].count("'") == 2 * (2 + 3)


def test_plugin_package_adds_a_quantizer_and_a_reward(tmp_path):
    # Installed into its own folder (not this environment), from a copy so the build
    # leaves nothing in examples/.
    source, target = tmp_path / "src", tmp_path / "site"
    shutil.copytree(EXAMPLES / "plugin", source)
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--no-build-isolation", "--target", str(target), str(source)],
                   check=True, capture_output=True)
    out = script("plugin/demo.py", tmp_path / "run", env={"PYTHONPATH": str(target)})
    assert "quantizers: pq, rkmeans, rqvae" in out
    assert "position-match" in out.splitlines()[1]
    assert "'items': 500, 'unique_sids': 500" in out
    assert out.strip().endswith("[1.0, 0.6666666666666666, 0.0]")
    assert (tmp_path / "run" / "sids" / "quantizer" / "codebooks.pt").is_file()


def test_plugin_is_not_registered_without_its_package():
    import deepinterest as di

    assert "pq" not in di.available("quantizers")
    assert "position-match" not in di.available("rewards")


def test_ensemble_of_a_run_with_itself_scores_as_the_run(chain):
    # The same beam twice: every item's fused score doubles, so the merged list and its
    # metrics are the model's own (benchmarks/ensemble_runs.py, as the docs run it).
    config, _ = chain
    work = config.parent / "work"
    run = [str(work / "dataset"), str(work / "sids"), str(work / "sft" / "best")]
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "ensemble_runs.py"), "--run", *run,
         "--run", *run, "--results-dir", str(config.parent / "records"), "--record", "self"],
        cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    figures = dict(line.strip().rsplit("  ", 1) for line in out.stdout.splitlines()[1:])
    for metric in ("hr@5", "ndcg@5", "hr@10", "ndcg@10"):
        assert figures[f"model 1 {metric}"] == figures[f"model 2 {metric}"]
        assert figures[f"probability {metric}"] == figures[f"model 1 {metric}"]
        assert figures[f"rrf {metric}"] == figures[f"model 1 {metric}"]
    assert (config.parent / "records" / "self.json").is_file()
