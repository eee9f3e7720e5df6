"""Failed mining is never taken for an answer: it stops the stage or is asked again."""

import json
import runpy
from pathlib import Path

import pytest
from typer.testing import CliRunner

from deepinterest.cli import app
from deepinterest.config import MineConfig
from deepinterest.errors import DeepInterestError
from deepinterest.miners import MineRequest
from deepinterest.miners.cache import Reply
from deepinterest.miners.replies import to_result
from deepinterest.miners.stage import mine_stage

pytest.importorskip("openai")
runner = CliRunner()
_SHARED = runpy.run_path(str(Path(__file__).with_name("fake_llm_server.py")))
FakeLLMServer = _SHARED["FakeLLMServer"]
TITLES = ["A", "B", "C", "D", "E"]  # the fake server names a request by its item's title


@pytest.fixture
def dataset(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "user_sequence.txt").write_text("u1 A B C D\nu2 E A B\n")
    (src / "x.item").write_text("item_id:token\ttitle:token\n" +
                                "".join(f"{t}\t{t}\n" for t in TITLES))
    out = tmp_path / "dataset"
    assert runner.invoke(app, ["data", "prepare", str(src), "--out", str(out)]).exit_code == 0
    return out


def _config(server, cache: Path, **extra) -> MineConfig:
    options = {"model": "fake", "base_url": server.openai_url, "cache": str(cache),
               "retries": 0, "reasks": 0, "progress": False, "prices": {"input": 0, "output": 0}}
    return MineConfig(miners=[{"backend": "openai", "options": options}], users="none", **extra)


def test_a_run_mostly_failed_writes_nothing_and_a_rerun_asks_only_the_failed(dataset, tmp_path):
    out = tmp_path / "interests"
    with FakeLLMServer(faults={"A": ["500"], "B": ["500"]}) as server:
        cfg = _config(server, tmp_path / "c.sqlite")
        with pytest.raises(DeepInterestError, match="mining failed for 2 of 5 items"):
            mine_stage(cfg, dataset, out, progress=False)
        assert not out.exists()
        result = mine_stage(cfg, dataset, out, progress=False)  # the endpoint is back
        assert result.counts["failed_items"] == 0
        assert server.counts() == {"A": 2, "B": 2, "C": 1, "D": 1, "E": 1}


def test_a_few_failed_items_are_written_then_asked_again_by_a_plain_rerun(dataset, tmp_path):
    out = tmp_path / "interests"
    with FakeLLMServer(faults={"C": ["500"]}) as server:
        cfg = _config(server, tmp_path / "c.sqlite", max_failed_share=0.5)
        first = mine_stage(cfg, dataset, out, progress=False)
        assert first.counts["failed_items"] == 1
        second = mine_stage(cfg, dataset, out, progress=False)
        assert not second.skipped and second.counts["failed_items"] == 0
        assert server.counts()["C"] == 2 and server.counts()["A"] == 1
        assert mine_stage(cfg, dataset, out, progress=False).skipped


def test_di_mine_exits_non_zero_with_a_summary(dataset, tmp_path):
    with FakeLLMServer(faults={t: ["500"] for t in TITLES}) as server:
        cfg = tmp_path / "c.toml"
        cfg.write_text(f'[[mine.miners]]\nbackend = "openai"\noptions = {{ model = "fake", '
                       f'base_url = "{server.openai_url}", cache = "{tmp_path / "c.sqlite"}", '
                       'retries = 0, progress = false }\n[mine]\nusers = "none"\n')
        result = runner.invoke(app, ["mine", str(dataset), "--out", str(tmp_path / "i"),
                                     "--config", str(cfg)])
    assert result.exit_code != 0
    assert "mining failed for 5 of 5 items" in result.output
    assert not (tmp_path / "i").exists()


def test_a_reply_cut_before_its_first_descriptor_is_a_failure_not_an_empty_answer():
    request = MineRequest("item", "A", {"title": "A"})
    meta = dict(backend="x", model="m", prompt_version="v")
    cut = to_result(request, Reply('{"descriptors": [{"text": "quiet foc'), **meta)
    assert not cut.ok and "cut off before its first complete descriptor" in cut.error
    kept = to_result(request, Reply('{"descriptors": [{"text": "quiet focus", "confidence": '
                                    '0.8}, {"text": "gif'), **meta)
    assert kept.ok and [d.text for d in kept.answer.descriptors] == ["quiet focus"]
    none = to_result(request, Reply(json.dumps({"descriptors": []})), **meta)
    assert none.ok and none.answer.descriptors == []  # "none" stays a valid answer
