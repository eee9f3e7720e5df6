"""Trie, constrained beam search and the Hugging Face constraint, on tiny random T5s.

The decode-protocol adapter below is a test double (the real T5 backbone lives
in ``backbones/t5.py``): ``start`` encodes the flattened history tokens once
per user, ``expand`` repeats them per beam, ``step`` runs the decoder over
``[BOS] + prefix`` and returns the log-softmax of the last position, exactly
what ``T5ForConditionalGeneration.generate`` scores.
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import pytest
import torch
from transformers import LogitsProcessorList, T5Config, T5ForConditionalGeneration

from deepinterest.backbones.base import BOS, EOS, PAD, HistoryBatch, SIDCatalog
from deepinterest.backbones.decoding import BeamResult, constrained_beam_search
from deepinterest.backbones.trie import SIDTrie
from deepinterest.errors import DeepInterestError


def _benchmark_module(name: str):
    """A module of ``benchmarks/`` (not part of the package), loaded from its file."""
    path = Path(__file__).resolve().parents[2] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"benchmarks_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# The Hugging Face generate constraints live beside bench_decoding, which compares against them.
_hf = _benchmark_module("hf_constraints")
SIDTrieLogitsProcessor = _hf.SIDTrieLogitsProcessor
make_prefix_allowed_tokens_fn = _hf.make_prefix_allowed_tokens_fn


class TinyT5:
    """The decode protocol over a randomly initialised 1+1-layer T5."""

    def __init__(self, catalog: SIDCatalog, *, seed: int = 0, bias: torch.Tensor | None = None):
        torch.manual_seed(seed)
        config = T5Config(vocab_size=catalog.vocab_size, d_model=32, d_kv=16, d_ff=64, num_layers=1,
                          num_decoder_layers=1, num_heads=2, dropout_rate=0.0, decoder_start_token_id=BOS,
                          pad_token_id=PAD, eos_token_id=EOS)
        self.net = T5ForConditionalGeneration(config).eval()
        with torch.no_grad():  # sharper than the default init, so item scores are far from ties
            self.net.lm_head.weight.mul_(4.0)
        self.catalog = catalog
        self.bias = bias  # added to the logits: a model that prefers chosen tokens

    def encoder_inputs(self, batch: HistoryBatch) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = self.catalog.item_tokens(batch.items).flatten(1)
        return tokens, tokens != PAD

    def start(self, batch: HistoryBatch):
        ids, mask = self.encoder_inputs(batch)
        return self.net.encoder(input_ids=ids, attention_mask=mask).last_hidden_state, mask

    def expand(self, state, beam: int):
        return tuple(t.repeat_interleave(beam, dim=0) for t in state)

    def step(self, state, prefix: torch.Tensor) -> torch.Tensor:
        hidden, mask = state
        bos = torch.full((prefix.shape[0], 1), BOS, dtype=torch.long)
        out = self.net(encoder_outputs=(hidden,), attention_mask=mask, decoder_input_ids=torch.cat([bos, prefix], 1))
        logits = out.logits[:, -1].float()
        return torch.log_softmax(logits if self.bias is None else logits + self.bias, dim=-1)


def random_catalog(items: int, sizes: tuple[int, ...], seed: int = 0) -> SIDCatalog:
    """``items`` distinct random SIDs."""
    g = torch.Generator().manual_seed(seed)
    codes = torch.stack([torch.randint(0, s, (items * 4,), generator=g) for s in sizes], 1)
    codes = torch.unique(codes, dim=0)
    codes = codes[torch.randperm(len(codes), generator=g)[:items]]
    assert len(codes) == items
    return SIDCatalog.from_codes(codes, sizes)


def random_batch(catalog: SIDCatalog, users: int, length: int = 5, seed: int = 1) -> HistoryBatch:
    g = torch.Generator().manual_seed(seed)
    items = torch.randint(0, len(catalog.item_ids), (users, length), generator=g)
    items[0, :2] = -1  # left padding, as pad_histories produces
    return HistoryBatch(items, torch.arange(users))


def brute_force_scores(model: TinyT5, batch: HistoryBatch) -> torch.Tensor:
    """[B, N] teacher-forced summed log-probs of every item's SID."""
    catalog = model.catalog
    n = len(catalog.item_ids)
    tokens = catalog.item_tokens(torch.arange(n)).repeat(batch.size, 1)
    state = model.expand(model.start(batch), n)
    total = torch.zeros(batch.size * n)
    with torch.no_grad():
        for p in range(catalog.positions):
            log_probs = model.step(state, tokens[:, :p])
            total += log_probs.gather(1, tokens[:, p : p + 1]).squeeze(1)
    return total.view(batch.size, n)


def items_of_sids(trie: SIDTrie, catalog: SIDCatalog, sids: torch.Tensor) -> torch.Tensor:
    """Item indices of code rows; fails on an invalid SID."""
    nodes = trie.walk(sids.reshape(-1, catalog.positions))
    assert (nodes >= 0).all(), "an invalid SID was produced"
    return trie.item_of(nodes).view(sids.shape[:-1])


@pytest.fixture(scope="module")
def small():
    catalog = random_catalog(30, (4, 5, 3))
    return catalog, SIDTrie.from_catalog(catalog), TinyT5(catalog), random_batch(catalog, 4)


def test_trie_tables_are_exact():
    catalog = SIDCatalog.from_codes(torch.tensor([[0, 1, 0], [0, 1, 1], [2, 0, 0]]))
    trie = SIDTrie.from_catalog(catalog)
    assert trie.sizes == (3, 2, 2)
    assert trie.children[0].tolist() == [[0, -1, 1]]  # root -> prefixes (0,), (2,)
    assert trie.children[1].tolist() == [[-1, 0], [1, -1]]  # (0,1), (2,0)
    assert trie.children[2].tolist() == [[0, 1], [2, -1]]  # leaves (0,1,0), (0,1,1), (2,0,0)
    assert trie.item_of(torch.tensor([0, 1, 2])).tolist() == [0, 1, 2]
    assert trie.allowed_mask(1, torch.tensor([1, 0])).tolist() == [[True, False], [False, True]]
    assert trie.advance(0, torch.tensor([0, 0]), torch.tensor([2, 1])).tolist() == [1, -1]
    assert trie.walk(torch.tensor([[2, 0, 0], [0, 1, 1], [0, 0, 0], [0, 1, 5]])).tolist() == [2, 1, -1, -1]
    assert trie.nbytes == 4 * (3 + 4 + 4) + 8 * 3


def test_trie_maps_leaves_back_to_shuffled_items():
    catalog = random_catalog(200, (6, 7, 5, 3), seed=3)
    trie = SIDTrie.from_catalog(catalog)
    assert torch.equal(trie.item_of(trie.walk(catalog.sids)), torch.arange(200))


def test_trie_rejects_duplicate_sids():
    with pytest.raises(DeepInterestError, match="items 0 and 2 share the SID"):
        SIDTrie.from_codes(torch.tensor([[0, 1], [1, 1], [0, 1]]), (2, 2))


def test_trie_builds_beauty_scale_catalogue_fast():
    g = torch.Generator().manual_seed(0)
    codes = torch.randint(0, 256, (12_101, 3), generator=g)
    _, inverse, counts = torch.unique(codes, dim=0, return_inverse=True, return_counts=True)
    # suffix = rank among items sharing the 3 codes, as collision handling assigns it
    order = torch.argsort(inverse, stable=True)
    starts = torch.cumsum(counts, 0) - counts
    suffix = torch.empty_like(inverse)
    suffix[order] = torch.arange(len(codes)) - starts[inverse[order]]
    sids = torch.cat([codes, suffix.unsqueeze(1)], 1)
    start = time.perf_counter()
    trie = SIDTrie.from_codes(sids, (256, 256, 256, int(suffix.max()) + 1))
    assert time.perf_counter() - start < 2.0
    assert trie.num_items == 12_101 and trie.children[3].shape[0] == len(counts)


def test_search_equals_brute_force_when_beam_covers_catalogue(small):
    catalog, trie, model, batch = small
    result = constrained_beam_search(model, batch, trie, beam=30, topk=10)
    assert isinstance(result, BeamResult) and result.items.shape == (4, 10)
    best = brute_force_scores(model, batch).sort(dim=1, descending=True)
    assert torch.equal(result.items, best.indices[:, :10])
    torch.testing.assert_close(result.scores, best.values[:, :10], atol=1e-5, rtol=1e-5)
    assert torch.equal(result.sids, catalog.sids[result.items])


def test_small_beam_returns_valid_sorted_distinct_items(small):
    catalog, trie, model, batch = small
    result = constrained_beam_search(model, batch, trie, beam=6, topk=10)
    assert result.items.shape == (4, 6)  # k = min(topk, beam, items)
    assert torch.equal(items_of_sids(trie, catalog, result.sids), result.items)
    assert (result.scores[:, 1:] <= result.scores[:, :-1]).all()
    assert all(len(set(row)) == 6 for row in result.items.tolist())
    # returned scores are the model's teacher-forced scores of the returned items
    brute = brute_force_scores(model, batch)
    torch.testing.assert_close(result.scores, brute.gather(1, result.items), atol=1e-5, rtol=1e-5)


def test_fewer_items_than_beams_drops_dead_beams():
    catalog = SIDCatalog.from_codes(torch.tensor([[0, 1, 0], [0, 1, 1], [2, 0, 0]]))
    model, trie = TinyT5(catalog), SIDTrie.from_catalog(catalog)
    result = constrained_beam_search(model, random_batch(catalog, 2), trie, beam=20, topk=10)
    assert result.items.shape == (2, 3) and torch.isfinite(result.scores).all()
    assert sorted(result.items[0].tolist()) == [0, 1, 2]


def test_search_never_leaves_the_trie_when_the_model_prefers_invalid_tokens():
    # Codes 1 and 3 never start a SID; 2 never follows 0; specials are never valid.
    catalog = SIDCatalog.from_codes(torch.tensor([[0, 0], [0, 1], [2, 2], [4, 0]]), (5, 3))
    trie = SIDTrie.from_catalog(catalog)
    offsets = catalog.offsets
    bias = torch.zeros(catalog.vocab_size)
    bias[[PAD, EOS, BOS, int(offsets[0]) + 1, int(offsets[0]) + 3, int(offsets[1]) + 2]] = 30.0
    model = TinyT5(catalog, bias=bias)
    batch = random_batch(catalog, 3)
    first = model.step(model.start(batch), torch.zeros((3, 0), dtype=torch.long))
    assert set(first.argmax(1).tolist()) <= {PAD, EOS, BOS, int(offsets[0]) + 1, int(offsets[0]) + 3}
    result = constrained_beam_search(model, batch, trie, beam=3, topk=3)
    assert torch.equal(items_of_sids(trie, catalog, result.sids), result.items)
    assert torch.isfinite(result.scores).all()


def test_search_checks_the_trie_matches_the_model(small):
    catalog, _, model, batch = small
    other = SIDTrie.from_codes(catalog.sids, tuple(s + 1 for s in catalog.sizes))
    with pytest.raises(DeepInterestError, match="build the trie with SIDTrie.from_catalog"):
        constrained_beam_search(model, batch, other)


def test_logits_processor_masks_exactly_the_trie_children():
    catalog = SIDCatalog.from_codes(torch.tensor([[0, 1, 0], [0, 1, 1], [2, 0, 0]]))
    trie = SIDTrie.from_catalog(catalog)
    proc = SIDTrieLogitsProcessor(trie, catalog)
    off = catalog.offsets.tolist()  # [3, 6, 8]; vocab 10
    ids = torch.tensor([[BOS, off[0] + 0], [BOS, off[0] + 2]])
    scores = proc(ids, torch.zeros(2, catalog.vocab_size))
    allowed = [torch.isfinite(row).nonzero().flatten().tolist() for row in scores]
    assert allowed == [[off[1] + 1], [off[1] + 0]]
    first = proc(torch.tensor([[BOS]]), torch.zeros(1, catalog.vocab_size))
    assert torch.isfinite(first[0]).nonzero().flatten().tolist() == [off[0], off[0] + 2]
    done = proc(torch.tensor([[BOS, off[0], off[1] + 1, off[2]]]), torch.zeros(1, catalog.vocab_size))
    assert torch.isfinite(done[0]).nonzero().flatten().tolist() == [EOS]
    fn = make_prefix_allowed_tokens_fn(trie, catalog)
    assert fn(0, ids[0]) == [off[1] + 1] and fn(0, torch.tensor([BOS])) == [off[0], off[0] + 2]


def _hf_generate(model: TinyT5, batch: HistoryBatch, k: int, beams: int, **constraint):
    """Codes [B, k, P] and scores [B, k] of ``generate``'s beam search.

    ``length_penalty=0`` makes ``sequences_scores`` plain summed log-probs (by
    default they are divided by the length, P for every hypothesis: same order,
    other values); ``max_new_tokens=P`` stops every beam after a full SID.
    """
    ids, mask = model.encoder_inputs(batch)
    out = model.net.generate(input_ids=ids, attention_mask=mask, num_beams=beams, num_return_sequences=k,
                             max_new_tokens=model.catalog.positions, length_penalty=0.0, do_sample=False,
                             decoder_start_token_id=BOS, return_dict_in_generate=True, output_scores=True,
                             **constraint)
    codes = model.catalog.tokens_to_codes(out.sequences[:, 1:]).view(batch.size, k, -1)
    return codes, out.sequences_scores.view(batch.size, k)


@pytest.mark.parametrize("how", ["processor", "prefix_fn"])
def test_hf_generate_matches_our_search(small, how):
    catalog, trie, model, batch = small
    constraint = (
        {"logits_processor": LogitsProcessorList([SIDTrieLogitsProcessor(trie, catalog)])}
        if how == "processor"
        else {"prefix_allowed_tokens_fn": make_prefix_allowed_tokens_fn(trie, catalog)}
    )
    codes, scores = _hf_generate(model, batch, k=10, beams=30, **constraint)
    ours = constrained_beam_search(model, batch, trie, beam=30, topk=10)
    assert torch.equal(items_of_sids(trie, catalog, codes), ours.items)
    torch.testing.assert_close(scores, ours.scores, atol=1e-4, rtol=1e-5)


def test_hf_generate_with_small_beam_stays_valid(small):
    catalog, trie, model, batch = small
    codes, scores = _hf_generate(model, batch, k=5, beams=5,
                                 logits_processor=LogitsProcessorList([SIDTrieLogitsProcessor(trie, catalog)]))
    items = items_of_sids(trie, catalog, codes)
    assert all(len(set(row)) == 5 for row in items.tolist()) and torch.isfinite(scores).all()


def test_best_candidates_match_a_stable_sort_with_ties():
    from deepinterest.backbones.decoding import _best

    g = torch.Generator().manual_seed(0)
    total = torch.randint(0, 4, (50, 40), generator=g).float()  # many ties at every rank
    total[:5, 3:] = float("-inf")  # rows with fewer finite candidates than beams
    scores, index = _best(total, 8)
    ref_scores, ref_index = torch.sort(total, dim=1, descending=True, stable=True)
    assert torch.equal(index, ref_index[:, :8]) and torch.equal(scores, ref_scores[:, :8])
    scores, index = _best(total[:, :3], 5)  # fewer candidates than beams: dead beams padded
    assert torch.isinf(scores[:, 3:]).all() and (index[:, 3:] == 0).all()
