"""T5Backbone: encoder input, decode protocol consistency, persistence."""

import pytest
import torch
from torch.nn import functional as F

from deepinterest.backbones.base import BOS, PAD, HistoryBatch, SIDCatalog
from deepinterest.backbones.decoding import constrained_beam_search
from deepinterest.backbones.t5 import T5Backbone
from deepinterest.backbones.trie import SIDTrie
from deepinterest.errors import DeepInterestError

SMALL = dict(d_model=32, encoder_layers=1, decoder_layers=1, heads=2, d_kv=16, d_ff=64)


def _catalog() -> SIDCatalog:
    # 12 items, unique SIDs over sizes (3, 2, 2, 1).
    codes = [(i // 4, (i // 2) % 2, i % 2, 0) for i in range(12)]
    return SIDCatalog.from_codes(torch.tensor(codes))


def _backbone(**extra) -> T5Backbone:
    torch.manual_seed(0)
    return T5Backbone(catalog=_catalog(), **{**SMALL, "dropout": 0.0, **extra}).eval()


def _batch() -> HistoryBatch:
    items = torch.tensor([[-1, -1, 3, 5], [0, 1, 2, 11], [-1, -1, -1, 7]])
    return HistoryBatch(items, torch.tensor([0, 1, 2]))


def test_one_encoder_position_per_item_is_the_sum_of_its_code_embeddings():
    model, batch = _backbone(), _batch()
    embeds, mask = model.encoder_inputs(batch)
    assert embeds.shape == (3, 4, 32)  # one position per history item, not per code
    tokens = model.catalog.item_tokens(batch.items)  # [B, H, P]
    expected = model.model.shared(tokens).sum(-2)
    real = batch.items >= 0
    torch.testing.assert_close(embeds[real], expected[real])
    assert torch.equal(embeds[~real], torch.zeros_like(embeds[~real]))
    assert torch.equal(mask, real.long())
    assert torch.equal(tokens[~real], torch.full_like(tokens[~real], PAD))


def test_code_positions_give_every_code_token_of_every_item_its_own_position():
    model, batch = _backbone(code_positions=True), _batch()
    embeds, mask = model.encoder_inputs(batch)
    tokens = model.catalog.item_tokens(batch.items)  # [B, H, P], PAD for padding items
    assert embeds.shape == (3, 4 * 4, 32) and mask.shape == (3, 16)
    real = tokens.flatten(1) != PAD
    assert torch.equal(mask, real.long())
    torch.testing.assert_close(embeds[real], model.model.shared(tokens.flatten(1))[real])
    assert torch.equal(embeds[~real], torch.zeros_like(embeds[~real]))
    # item 3's codes are positions 8..11 of row 0, in SID order
    torch.testing.assert_close(embeds[0, 8:12], model.model.shared(model.target_tokens(torch.tensor(3))))
    with pytest.raises(DeepInterestError, match="one or the other"):
        _backbone(code_positions=True, id_embedding=True)


def test_user_token_is_prepended_as_an_extra_real_position():
    model, batch = _backbone(user_buckets=7), _batch()
    embeds, mask = model.encoder_inputs(batch)
    assert embeds.shape == (3, 5, 32) and mask[:, 0].eq(1).all()
    buckets = torch.unique(torch.tensor([[u] for u in range(100)]) * 2654435761 % 7)
    assert len(buckets) == 7  # the hash spreads consecutive users over every bucket


@pytest.mark.parametrize("extra", [{}, {"code_positions": True}])
def test_step_log_probs_equal_teacher_forced_logits_of_loss(extra):
    model, batch = _backbone(**extra), _batch()
    targets = torch.tensor([4, 9, 0])
    with torch.no_grad():
        teacher = F.log_softmax(model.teacher_logits(batch, targets), dim=-1)  # [B, P, V]
        tokens = model.target_tokens(targets)
        state = model.start(batch)
        for t in range(model.catalog.positions):
            torch.testing.assert_close(model.step(state, tokens[:, :t]), teacher[:, t],
                                       rtol=1e-5, atol=1e-5)
        expected = -teacher.gather(-1, tokens.unsqueeze(-1)).mean()
        torch.testing.assert_close(model.loss(batch, targets), expected)


def test_expand_repeats_each_user_for_its_beams():
    model, batch = _backbone(), _batch()
    with torch.no_grad():
        state = model.start(batch)
        wide = model.expand(state, 3)
        prefix = torch.zeros((9, 0), dtype=torch.long)
        scores = model.step(wide, prefix)
        torch.testing.assert_close(scores[::3], model.step(state, prefix[:3]))
        torch.testing.assert_close(scores[2::3], scores[::3])


def test_beam_rows_with_different_prefixes_equal_decoding_each_alone():
    model, batch = _backbone(), _batch()
    model.eval()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        state = model.start(batch)
        for t in (1, 2):
            prefix = torch.randint(3, model.catalog.vocab_size, (3 * 4, t), generator=g)
            wide = model.step(model.expand(state, 4), prefix)  # row r -> user r // 4
            for beam in range(4):
                alone = model.step(state, prefix[beam::4])
                torch.testing.assert_close(wide[beam::4], alone, rtol=1e-5, atol=1e-5)


class _NoReorder:
    """The backbone without its ``reorder`` hook: the search cannot keep its cache in step."""

    def __init__(self, model: T5Backbone):
        self.catalog, self.start, self.expand, self.step = model.catalog, model.start, model.expand, model.step


def _teacher_scores(model: T5Backbone, batch: HistoryBatch) -> torch.Tensor:
    """[B, N] summed log-probs of every item's SID from the model's own full forward."""
    n = len(model.catalog.item_ids)
    wide = HistoryBatch(batch.items.repeat_interleave(n, 0), batch.users.repeat_interleave(n))
    targets = torch.arange(n).repeat(batch.size)
    with torch.no_grad():
        log_probs = F.log_softmax(model.teacher_logits(wide, targets), dim=-1)
    tokens = model.target_tokens(targets).unsqueeze(-1)
    return log_probs.gather(-1, tokens).squeeze(-1).sum(-1).view(batch.size, n)


@pytest.mark.parametrize("beam,extra", [(4, {}), (12, {}), (12, {"code_positions": True})])
def test_cached_search_equals_recomputing_and_the_full_forward(beam, extra):
    model, batch = _backbone(**extra), _batch()
    with torch.no_grad():  # sharper scores, far from ties
        model.model.lm_head.weight.mul_(4.0)
    trie = SIDTrie.from_catalog(model.catalog)
    cached = constrained_beam_search(model, batch, trie, beam=beam, topk=beam)
    fresh = constrained_beam_search(_NoReorder(model), batch, trie, beam=beam, topk=beam)
    assert torch.equal(cached.items, fresh.items)
    torch.testing.assert_close(cached.scores, fresh.scores, rtol=1e-5, atol=1e-5)
    teacher = _teacher_scores(model, batch)
    torch.testing.assert_close(cached.scores, teacher.gather(1, cached.items), rtol=1e-5, atol=1e-5)
    if beam == 12:  # the beam covers the catalogue: exactly the 12 best items, in order
        assert torch.equal(cached.items, teacher.argsort(dim=1, descending=True, stable=True))


def test_cache_is_not_reused_for_a_prefix_it_does_not_hold():
    model, batch = _backbone(), _batch()
    with torch.no_grad():
        state = model.start(batch)
        model.step(state, torch.tensor([[3], [4], [5]]))  # fills the cache with these tokens
        assert state.cache.tokens.shape == (3, 2)
        other = torch.tensor([[5, 6], [3, 7], [5, 7]])  # first tokens differ in rows 0 and 1
        torch.testing.assert_close(model.step(state, other), model.step(model.start(batch), other))
        extended = torch.tensor([[5, 6, 8], [3, 7, 8], [5, 7, 9]])  # extends the held tokens
        torch.testing.assert_close(model.step(state, extended), model.step(model.start(batch), extended),
                                   rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("extra", [{}, {"code_positions": True}])
def test_left_padding_does_not_change_the_output(extra):
    # Relative position bias sees only distances between real items, so batches may be trimmed.
    model, batch = _backbone(**extra), _batch()
    wider = HistoryBatch(torch.cat([torch.full((3, 5), -1), batch.items], 1), batch.users)
    prefix = torch.tensor([[3], [5], [4]])
    with torch.no_grad():
        torch.testing.assert_close(model.step(model.start(wider), prefix),
                                   model.step(model.start(batch), prefix), rtol=1e-5, atol=1e-5)


def test_loss_backpropagates_to_the_shared_table_through_the_encoder_sum():
    model = _backbone().train()
    model.loss(_batch(), torch.tensor([4, 9, 0])).backward()
    grad = model.model.shared.weight.grad
    history_tokens = model.catalog.item_tokens(torch.tensor([3, 5, 0, 1, 2, 11, 7])).unique()
    assert grad[history_tokens].abs().sum(-1).gt(0).all()
    assert model.catalog.vocab_size == model.model.config.vocab_size
    assert model.model.config.decoder_start_token_id == BOS


@pytest.mark.parametrize("extra", [{}, {"user_buckets": 5}, {"id_embedding": True},
                                   {"code_positions": True}])
def test_save_load_round_trip_gives_identical_log_probs(tmp_path, extra):
    model, batch = _backbone(**extra), _batch()
    with torch.no_grad():  # move the user table off its init so the test sees it reloaded
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    model.save(tmp_path / "ckpt")
    loaded = T5Backbone.load(tmp_path / "ckpt", model.catalog).eval()
    assert loaded.options == model.options
    prefix = torch.tensor([[3, 6], [4, 5], [5, 6]])
    with torch.no_grad():
        assert torch.equal(loaded.step(loaded.start(batch), prefix),
                           model.step(model.start(batch), prefix))


def test_id_embedding_starts_at_zero_and_then_separates_items_with_the_same_codes():
    codes = torch.tensor([[0, 0], [0, 0], [1, 0]])  # items 0 and 1 share every code
    catalog = SIDCatalog(["a", "b", "c"], codes, (2, 1))
    torch.manual_seed(0)
    model = T5Backbone(catalog=catalog, **SMALL, id_embedding=True)
    items = torch.tensor([[0, 1, -1]])
    plain = model.model.shared(model.item_codes[items.clamp(min=0)]).sum(-2)
    start = model.item_embeddings(items)
    torch.testing.assert_close(start[0, :2], plain[0, :2])  # the code-only model at first
    assert torch.equal(start[0, 0], start[0, 1])
    with torch.no_grad():
        model.item_embed.weight.normal_()
    moved = model.item_embeddings(items)
    assert not torch.equal(moved[0, 0], moved[0, 1])
    torch.testing.assert_close(moved[0, 1] - plain[0, 1], model.item_embed.weight[1])
    assert torch.equal(moved[0, 2], torch.zeros(32))  # padding stays zero


def test_streamlined_feed_forward_and_dropout_keep_the_function_and_parameter_names():
    from transformers import T5ForConditionalGeneration

    model, batch = _backbone(dropout=0.1), _batch()
    plain = T5ForConditionalGeneration(model.model.config).eval()
    assert plain.state_dict().keys() == model.model.state_dict().keys()
    plain.load_state_dict(model.model.state_dict())
    names = {type(m).__name__ for m in model.model.modules()}
    assert {"_FeedForward", "PackedDropout"} <= names and "T5DenseActDense" not in names
    embeds, mask = model.encoder_inputs(batch)
    with torch.no_grad():
        ours = model.model.encoder(inputs_embeds=embeds, attention_mask=mask).last_hidden_state
        theirs = plain.encoder(inputs_embeds=embeds, attention_mask=mask).last_hidden_state
    torch.testing.assert_close(ours, theirs)
    assert not any(type(m).__name__ == "PackedDropout"
                   for m in _backbone(packed_dropout=False).modules())


def test_load_refuses_a_different_catalogue(tmp_path):
    model = _backbone()
    model.save(tmp_path / "ckpt")
    other = SIDCatalog.from_codes(torch.tensor([[0, 0], [1, 0]]))
    with pytest.raises(DeepInterestError, match="catalogue"):
        T5Backbone.load(tmp_path / "ckpt", other)


def test_codebook_init_makes_item_inputs_a_projection_of_their_reconstructions():
    from deepinterest.tokenizers.rkmeans import ResidualKMeans

    g = torch.Generator().manual_seed(0)
    vectors = torch.randn(200, 8, generator=g)
    quantizer = ResidualKMeans(levels=2, codebook_size=6)
    quantizer.fit(vectors, seed=0)
    codes = quantizer.encode(vectors)
    codes = torch.unique(codes, dim=0)  # one item per distinct code pair
    torch.manual_seed(0)
    model = T5Backbone(catalog=SIDCatalog.from_codes(codes, (6, 6)), **SMALL)
    model.init_code_embeddings(quantizer.codebooks)
    inputs = model.item_embeddings(torch.arange(len(codes))).detach()
    recon = quantizer.decode(codes)
    # d_model 32 >= 8 dims: the projection keeps inner products, up to one scale
    gram, content = inputs @ inputs.T, recon @ recon.T
    scale2 = gram.trace() / content.trace()
    torch.testing.assert_close(gram, scale2 * content, rtol=1e-4, atol=1e-4)
    level0 = model.model.shared.weight[int(model.catalog.offsets[0]):][:6].detach()
    torch.testing.assert_close(level0.pow(2).mean(), torch.tensor(1.0))  # T5's init scale
    with pytest.raises(DeepInterestError, match="do not match"):
        model.init_code_embeddings([torch.zeros(5, 8)])


def test_label_smoothing_mixes_the_target_nll_with_the_mean_over_the_vocabulary():
    plain, smooth = _backbone(), _backbone(label_smoothing=0.2)
    batch, targets = _batch(), torch.tensor([4, 9, 0])
    logp = F.log_softmax(plain.teacher_logits(batch, targets).float(), -1)
    nll = -logp.gather(-1, plain.target_tokens(targets).unsqueeze(-1)).mean()
    spread = -logp.mean(-1).mean()
    torch.testing.assert_close(plain.loss(batch, targets), nll)
    torch.testing.assert_close(smooth.loss(batch, targets), 0.8 * nll + 0.2 * spread)
    with pytest.raises(DeepInterestError, match="label_smoothing"):
        _backbone(label_smoothing=1.0)
