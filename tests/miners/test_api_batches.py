"""Batch runs of the remote miners against the local stand-in (fake_llm_server.py).

The real ``openai`` and ``anthropic`` SDKs upload, create, poll, read and
cancel batches over HTTP on 127.0.0.1; the server answers each batch line as
it would a single request (with the same scripted faults) and records what
it received, so these tests see what was actually submitted.
"""

from __future__ import annotations

import asyncio
import json
import runpy
import time
from pathlib import Path

import pytest

from deepinterest.miners import MineRequest
from deepinterest.miners.prompts import prompt_for

pytest.importorskip("openai")
pytest.importorskip("anthropic")

_SHARED = runpy.run_path(str(Path(__file__).with_name("fake_llm_server.py")))
FakeLLMServer = _SHARED["FakeLLMServer"]
BACKENDS = ["openai", "anthropic"]
PRICES = {"input": 1000.0, "output": 1000.0}  # $ per 1M tokens: costs large enough to compare


def _miner(backend: str, server, tmp_path: Path, **options):
    return _SHARED["api_miner"](backend, server, tmp_path / "mining.sqlite",
                                **{**dict(prices=PRICES, batch=True, batch_poll_seconds=0.02), **options})


_items, _stored_keys = _SHARED["item_requests"], _SHARED["stored_keys"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_item_is_answered_through_one_batch_at_half_price(backend, tmp_path):
    requests = [*_items(4), MineRequest("judge", "J", {"title": "I0"}, descriptors=("a b",))]
    with FakeLLMServer() as server:
        miner = _miner(backend, server, tmp_path, batch_price_factor=0.5)
        results = miner.mine(requests)
        seen, batches = list(server.seen), list(server.batches.values())
    assert [(r.key, r.task) for r in results] == [(q.key, q.task) for q in requests]
    assert all(r.ok and r.attempts == 1 and not r.cached for r in results)
    assert results[-1].answer.labels == [1]
    assert len(batches) == 1 and len(batches[0]["lines"]) == len(requests)
    assert all(s.path.startswith("batch") for s in seen) and len(seen) == len(requests)
    # Each line's body is exactly what a single request sends.
    assert {s.structured for s in seen} == {"json_schema" if backend == "openai" else "answer"}
    conversation = miner._conversation(requests[0], prompt_for("item"))
    single = (miner._arguments(conversation) if backend == "openai"
              else miner._params(conversation))
    assert batches[0]["lines"][0] == ("q0", json.loads(json.dumps(single)))
    for r in results:
        assert r.cost_usd == pytest.approx(miner.price.cost(r.tokens_in, r.tokens_out) * 0.5)
    assert miner.budget.spent == pytest.approx(sum(r.cost_usd for r in results))
    assert _stored_keys(tmp_path / "mining.sqlite") == {q.key for q in requests}


def test_the_batch_discount_defaults_only_where_the_provider_states_it(tmp_path):
    with FakeLLMServer() as server:
        assert _miner("anthropic", server, tmp_path).options.batch_price_factor == 0.5
        assert _miner("openai", server, tmp_path).options.batch_price_factor == 1.0


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_cached_item_is_not_resubmitted(backend, tmp_path):
    with FakeLLMServer() as server:
        first = _miner(backend, server, tmp_path, batch=False).mine(_items(1))
        results = _miner(backend, server, tmp_path).mine(_items(3))
        batches = list(server.batches.values())
    assert first[0].ok and results[0].cached and results[0].attempts == 0
    assert all(r.ok for r in results) and not any(r.cached for r in results[1:])
    assert [custom_id for custom_id, _ in batches[0]["lines"]] == ["q1", "q2"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_line_errors_expiries_and_bad_json_are_recorded_failures(backend, tmp_path):
    faults = {"I1": ["500"], "I2": ["notjson"], "I3": ["expired"], "I4": ["truncated"]}
    with FakeLLMServer(faults=faults) as server:
        results = _miner(backend, server, tmp_path).mine(_items(5))
        by_key = {r.key: r for r in results}
        assert [r.key for r in results] == [f"I{i}" for i in range(5)]
        assert {k for k, r in by_key.items() if r.ok} == {"I0", "I4"}
        assert by_key["I4"].extra == {"repaired": True}
        line_error = "HTTP 500" if backend == "openai" else "errored: api_error"
        assert by_key["I1"].error.startswith(line_error) and by_key["I1"].cost_usd == 0
        assert by_key["I2"].error == "no JSON object in the reply" and by_key["I2"].raw
        assert "expired" in by_key["I3"].error
        assert _stored_keys(tmp_path / "mining.sqlite") == {"I0", "I4"}
        # The next run asks again only for what has no valid answer.
        again = _miner(backend, server, tmp_path).mine(_items(5))
        lines = list(server.batches.values())[-1]["lines"]
    assert all(r.ok for r in again) and [c for c, _ in lines] == ["q1", "q2", "q3"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_batch_past_its_timeout_is_cancelled_and_its_items_fail(backend, tmp_path):
    with FakeLLMServer(batch_delay=60) as server:
        miner = _miner(backend, server, tmp_path, batch_timeout_seconds=0.3, budget_usd=100.0)
        start = time.monotonic()
        results = miner.mine(_items(3))
        elapsed = time.monotonic() - start
        batch_ids = list(server.batches)
        cancelled = list(server.cancelled)
    assert 0.3 <= elapsed < 5 and cancelled == batch_ids and len(batch_ids) == 1
    assert all(not r.ok and "did not finish within 0.3 s" in r.error and "cancelled" in r.error
               for r in results)
    # Lines of a cancelled batch may have run: the budget keeps their worst case.
    assert miner.budget.spent > 0 and miner.budget.held == 0
    assert not (tmp_path / "mining.sqlite").exists() or not _stored_keys(
        tmp_path / "mining.sqlite")


def test_a_stopped_run_cancels_its_batch(tmp_path):
    with FakeLLMServer(batch_delay=60) as server:
        miner = _miner("openai", server, tmp_path, budget_usd=100.0)

        async def stopped() -> None:
            task = asyncio.create_task(miner.amine(_items(2)))
            for _ in range(500):
                if server.batches or task.done():
                    break
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.05)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        asyncio.run(stopped())
        assert server.cancelled == list(server.batches) and len(server.cancelled) == 1
    assert miner.budget.held == 0 and miner.budget.spent > 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_batch_over_budget_is_refused_whole_and_not_submitted(backend, tmp_path):
    with FakeLLMServer() as server:
        miner = _miner(backend, server, tmp_path, budget_usd=0.5, max_tokens=100)
        results = miner.mine(_items(3))
        submitted = list(server.batches)
    assert all(r.error == "budget" and r.attempts == 0 for r in results)
    assert not submitted and miner.budget.spent == 0


def test_the_api_key_is_in_nothing_a_batch_run_wrote(tmp_path, monkeypatch, caplog, capsys):
    def check(results):
        assert results[0].ok and not results[1].ok and "[redacted]" in results[1].error

    leaks = _SHARED["key_leaks"](tmp_path, monkeypatch, caplog, capsys,
                                 lambda backend, server: _miner(backend, server, tmp_path), check)
    assert not leaks