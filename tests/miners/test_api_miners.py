"""The remote API miners against a local server speaking each API (fake_llm_server.py).

The real ``openai`` and ``anthropic`` SDKs talk HTTP to 127.0.0.1; the server
scripts faults per item (429 with Retry-After, 500, a reply slower than the
timeout, prose instead of JSON, JSON cut off) and counts what it receives, so
these tests see what was actually sent.
"""

from __future__ import annotations

import asyncio
import email.utils
import runpy
import sys
import threading
import time
from pathlib import Path

import pytest

from deepinterest import registry
from deepinterest.errors import ConfigError, DeepInterestError, MissingDependencyError
from deepinterest.miners import MineRequest
from deepinterest.miners.cost import price_for
from deepinterest.miners.engine import retry_after
from deepinterest.miners.limits import TokenBucket

pytest.importorskip("openai")
pytest.importorskip("anthropic")

_SHARED = runpy.run_path(str(Path(__file__).with_name("fake_llm_server.py")))
FakeLLMServer = _SHARED["FakeLLMServer"]
BACKENDS = ["openai", "anthropic"]
FREE = {"input": 0.0, "output": 0.0}


def _miner(backend: str, server, tmp_path: Path, **options):
    return _SHARED["api_miner"](backend, server, tmp_path / "mining.sqlite",
                                **{**dict(backoff=0.01, prices=FREE), **options})


_items, _stored_keys = _SHARED["item_requests"], _SHARED["stored_keys"]


# ---------------------------------------------------------------- faults end in a result


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_item_ends_mined_or_recorded_failed(backend, tmp_path):
    faults = {"I1": ["500"], "I2": ["notjson"], "I3": ["truncated"], "I4": ["notjson"] * 2,
              "I5": ["slow:1.5"], "I6": ["500"] * 9, "I7": ["429:0"]}
    requests = [*_items(8), MineRequest("judge", "J", {"title": "I0"}, descriptors=("a b",))]
    with FakeLLMServer(faults=faults) as server:
        results = _miner(backend, server, tmp_path, timeout=1.0, retries=2).mine(requests)
        counts = server.counts()
    assert [(r.key, r.task) for r in results] == [(q.key, q.task) for q in requests]
    by_key = {r.key: r for r in results}
    assert all(r.ok or r.error for r in results)
    assert {k for k, r in by_key.items() if not r.ok} == {"I4", "I6"}
    assert by_key["I4"].error == "no JSON object in the reply" and by_key["I4"].attempts == 2
    assert by_key["I6"].error.startswith("HTTP 500") and counts["I6"] == 3  # 1 + 2 retries
    assert by_key["I2"].attempts == 2 and by_key["I3"].extra == {"repaired": True}
    assert by_key["I5"].attempts == 2 and counts["I5"] == 2  # the slow one was given up
    assert by_key["J"].answer.labels == [1]
    assert all(r.backend == backend and r.tokens_in > 0 for r in results if r.ok)


@pytest.mark.parametrize("backend", BACKENDS)
def test_structured_output_and_images_are_sent(backend, tmp_path):
    png = tmp_path / "item.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 16)
    requests = [MineRequest("item", "A", {"title": "A"}, image=str(png)),
                MineRequest("item", "B", {"title": "B"}, image="https://example.org/b.jpg"),
                MineRequest("item", "C", {"title": "C"}, image=str(tmp_path / "missing.png"))]
    with FakeLLMServer() as server:
        results = _miner(backend, server, tmp_path).mine(requests)
        seen = {s.item: s for s in server.seen}
    assert results[0].ok and results[1].ok
    assert results[2].error.startswith("image file not found") and "C" not in seen
    expected = "json_schema" if backend == "openai" else "answer"
    assert seen["A"].structured == seen["B"].structured == expected
    local = "data:image/png;base64," if backend == "openai" else "image/png"
    assert seen["A"].image.startswith(local) and seen["B"].image.startswith("https://example")


# ---------------------------------------------------------------- restart, cache


def test_a_killed_run_restarted_asks_no_answered_item_again(tmp_path):
    requests = _items(30)
    faults = {q.key: ["slow:0.05"] for q in requests}
    with FakeLLMServer(faults=faults) as server:
        first = _miner("openai", server, tmp_path, concurrency=3)

        async def killed_after_ten() -> None:
            task = asyncio.create_task(first.amine(requests))
            deadline = time.monotonic() + 10
            while len(first.cache) < 10 and not task.done() and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        asyncio.run(killed_after_ten())
        answered = _stored_keys(tmp_path / "mining.sqlite")
        assert 10 <= len(answered) < len(requests)
        results = _miner("openai", server, tmp_path, concurrency=3).mine(requests)
        counts = server.counts()
    assert all(r.ok for r in results)
    assert all(counts[key] == 1 for key in answered), counts
    assert {r.key for r in results if r.cached} == answered


def test_the_cache_key_ignores_rates_and_secrets_but_not_the_question(tmp_path):
    with FakeLLMServer() as server:
        _miner("openai", server, tmp_path).mine(_items(2))
        again = _miner("openai", server, tmp_path, rpm=600, retries=1, concurrency=1,
                       api_key_env="SOME_OTHER_KEY").mine(_items(2))
        hotter = _miner("openai", server, tmp_path, temperature=0.5).mine(_items(1))
        counts = server.counts()
    assert all(r.cached and r.attempts == 0 for r in again)
    assert not hotter[0].cached and counts == {"I0": 2, "I1": 1}


# ---------------------------------------------------------------- budget and prices


def test_the_budget_is_never_crossed_and_the_rest_is_not_sent(tmp_path):
    budget = 4.0  # $1000 per 1M tokens: each answer costs about $0.5, reserves about $2.3
    with FakeLLMServer() as server:
        miner = _miner("openai", server, tmp_path, budget_usd=budget, max_tokens=200,
                       prices={"input": 1000.0, "output": 1000.0}, concurrency=4)
        results = miner.mine(_items(20))
        sent = sum(server.counts().values())
    answered = [r for r in results if r.ok]
    refused = [r for r in results if r.error == "budget"]
    assert answered and refused and len(answered) + len(refused) == 20
    assert sum(r.cost_usd for r in results) <= budget and miner.budget.spent <= budget
    assert sent == len(answered) and all(r.attempts == 0 for r in refused)


def test_prices_come_from_the_table_or_an_override():
    assert price_for("claude-haiku-4-5-20251001") == price_for("claude-haiku-4-5")
    assert price_for("claude-haiku-4-5").cost(1_000_000, 0) > 0
    assert price_for("no-such-model") is None
    assert price_for("no-such-model", price_for("claude-haiku-4-5")) is not None


def test_a_budget_on_an_unpriced_model_is_refused_and_cost_zero_warns(tmp_path):
    with pytest.raises(ConfigError, match="prices"):
        registry.create("miners", "openai", model="unpriced-x", base_url="http://127.0.0.1:9",
                        budget_usd=1.0, cache=str(tmp_path / "c.sqlite"))
    with FakeLLMServer() as server, pytest.warns(UserWarning, match="unpriced-y"):
        result = _miner("anthropic", server, tmp_path, model="unpriced-y",
                        prices=None).mine(_items(1))[0]
    assert result.ok and result.cost_usd == 0


# ---------------------------------------------------------------- the key stays secret


def test_the_api_key_is_nowhere_the_run_wrote(tmp_path, monkeypatch, caplog, capsys):
    def check(results):
        assert results[1].error.startswith("HTTP 401") and results[0].ok

    leaks = _SHARED["key_leaks"](tmp_path, monkeypatch, caplog, capsys,
                                 lambda backend, server: _miner(backend, server, tmp_path), check)
    assert not leaks


def test_a_key_given_as_an_option_is_refused_without_being_repeated(tmp_path, monkeypatch):
    with pytest.raises(ConfigError) as err:
        registry.create("miners", "openai", model="m", api_key="sk-secret-123456789",
                        cache=str(tmp_path / "c.sqlite"))
    assert "sk-secret" not in str(err.value) and "OPENAI_API_KEY" in str(err.value)
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="ANTHROPIC_API_KEY"):
        registry.create("miners", "anthropic", model="m", cache=str(tmp_path / "c.sqlite"))


# ---------------------------------------------------------------- rate limits and retries


def test_retry_after_is_honoured(tmp_path):
    with FakeLLMServer(faults={"I0": ["429:1"]}) as server:
        start = time.monotonic()
        result = _miner("openai", server, tmp_path, backoff=0.0).mine(_items(1))[0]
        elapsed = time.monotonic() - start
        first, second = (s.at for s in server.seen)
    assert result.ok and result.attempts == 2
    assert second - first >= 1.0 and elapsed >= 1.0


def test_retry_after_reads_seconds_milliseconds_and_http_dates():
    soon = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert retry_after({"retry-after": "2"}) == 2.0
    assert retry_after({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert 28 <= retry_after({"retry-after": soon}) <= 30
    assert retry_after({"retry-after": "soon"}) is None and retry_after(None) is None


def test_the_requests_per_minute_limit_holds(tmp_path):
    rpm, n = 600, 25  # a burst of 10, then 590 a minute
    with FakeLLMServer() as server:
        results = _miner("openai", server, tmp_path, rpm=rpm).mine(_items(n))
        times = sorted(s.at for s in server.seen)
    assert all(r.ok for r in results)
    # 15 after the burst at 590 a minute take 1.53 s (less a little: the first requests
    # reach the server later than they leave, on new connections).
    assert times[-1] - times[0] >= (n - 10) / ((rpm - 10) / 60) - 0.25
    # In any second: the burst and a second's refill (19.8), give or take arrival jitter.
    assert max(sum(t <= u < t + 1 for u in times) for t in times) <= 22


def test_a_token_bucket_never_gives_more_than_its_minute():
    bucket, now, taken = TokenBucket(600), 0.0, []
    bucket.stamp = 0.0
    while now < 180:
        wait = bucket.wait(1, now)
        if wait > 0:
            now += wait
            continue
        bucket.take(1)
        taken.append(now)
    worst = max(sum(t <= u < t + 60 for u in taken) for t in taken[::50])
    assert 590 <= worst <= 600


# ---------------------------------------------------------------- sync and async callers


def test_mine_works_from_a_thread_and_refuses_a_running_loop(tmp_path):
    with FakeLLMServer() as server:
        miner = _miner("openai", server, tmp_path)
        out: list = []
        thread = threading.Thread(target=lambda: out.extend(miner.mine(_items(2))))
        thread.start()
        thread.join(timeout=30)

        async def inside() -> None:
            with pytest.raises(DeepInterestError, match="amine"):
                miner.mine(_items(1))
            assert (await miner.amine(_items(1)))[0].ok

        asyncio.run(inside())
    assert [r.ok for r in out] == [True, True] and miner.mine([]) == []


def test_a_missing_sdk_names_its_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "anthropic", None)  # as if not installed
    with pytest.raises(MissingDependencyError, match=r"deepinterest\[anthropic\]"):
        registry.create("miners", "anthropic", model="m", base_url="http://127.0.0.1:9",
                        cache=str(tmp_path / "c.sqlite"))


def test_unknown_options_are_named(tmp_path):
    with pytest.raises(ConfigError, match="rpn"):
        registry.create("miners", "anthropic", model="m", base_url="http://127.0.0.1:9",
                        rpn=5, cache=str(tmp_path / "c.sqlite"))
