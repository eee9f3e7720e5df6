"""TwoViewT5: one T5 over two SID views; each view decodes exactly what training scores."""

import pytest
import torch

from deepinterest.backbones.base import HistoryBatch, SIDCatalog
from deepinterest.backbones.decoding import constrained_beam_search
from deepinterest.backbones.t5 import T5Backbone
from deepinterest.backbones.t5_views import TwoViewT5
from deepinterest.backbones.trie import SIDTrie
from deepinterest.errors import DeepInterestError
from deepinterest.train.checkpoints import load_checkpoint

SMALL = dict(d_model=32, encoder_layers=1, decoder_layers=1, heads=2, d_kv=16, d_ff=64,
             dropout=0.0)
ITEMS = 12


def _views(second_positions: int = 2) -> tuple[SIDCatalog, SIDCatalog]:
    first = [(i // 4, (i // 2) % 2, i % 2) for i in range(ITEMS)]  # sizes (3, 2, 2)
    # another grouping: sizes (5, 3), or (5, 3, 1) for as many positions as the first
    second = [(i % 5, i // 5, 0)[:second_positions] for i in range(ITEMS)]
    return (SIDCatalog.from_codes(torch.tensor(first)),
            SIDCatalog.from_codes(torch.tensor(second)))


def _model(seed: int = 0, second_positions: int = 2, **options) -> TwoViewT5:
    torch.manual_seed(seed)
    first, second = _views(second_positions)
    return TwoViewT5(catalog=first, second=second, **SMALL, **options).eval()


def _batch() -> HistoryBatch:
    return HistoryBatch(torch.tensor([[-1, 3, 5], [0, 1, 11], [-1, -1, 7]]),
                        torch.tensor([0, 1, 2]))


def _chain_logprob(view, batch: HistoryBatch, targets: torch.Tensor) -> torch.Tensor:
    """Mean log-probability of the targets' tokens read off ``step``, token by token."""
    tokens = view.catalog.item_tokens(targets)
    state = view.expand(view.start(batch), 1)
    with torch.no_grad():
        steps = [view.step(state, tokens[:, :t]).gather(1, tokens[:, t:t + 1])
                 for t in range(tokens.shape[1])]
    return torch.cat(steps, 1).mean()


@pytest.mark.parametrize("second_positions", [2, 3])  # views of other / equal lengths
@pytest.mark.parametrize("weight,own", [(1.0, False), (0.25, False), (1.0, True)])
def test_the_loss_weighs_what_each_view_decodes_with(second_positions, weight, own):
    model = _model(second_positions=second_positions, second_weight=weight,
                   second_decoder=own)
    if own:  # its own weights, not a copy of the first decoder's
        with torch.no_grad():
            for value in model.second_decoder.block.parameters():
                value.add_(0.1 * torch.randn_like(value))
    batch, targets = _batch(), torch.tensor([4, 9, 2])
    with torch.no_grad():
        loss = model.loss(batch, targets)
    first = _chain_logprob(model, batch, targets)
    second = _chain_logprob(model.views()[1], batch, targets)
    torch.testing.assert_close(loss, -(first + weight * second) / (1 + weight),
                               atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("weight", [0.0, -0.5, 1.5])
def test_a_second_weight_outside_zero_to_one_is_refused(weight):
    with pytest.raises(DeepInterestError, match="second_weight"):
        _model(second_weight=weight)


def test_each_view_scores_its_own_vocabulary_and_the_first_keeps_its_token_ids():
    model = _model()
    first, second = _views()
    view = model.views()[1]
    assert model.catalog.sizes == first.sizes
    assert view.catalog.sizes == second.sizes
    state = model.expand(model.start(_batch()), 1)
    with torch.no_grad():
        assert model.step(state, torch.zeros(3, 0, dtype=torch.long)).shape == (
            3, first.vocab_size)
        assert view.step(state, torch.zeros(3, 0, dtype=torch.long)).shape == (
            3, second.vocab_size)
    # the union vocabulary is the first view's, then the second view's blocks
    assert model.model.config.vocab_size == first.vocab_size + sum(second.sizes)


def test_an_item_is_read_as_the_sum_of_both_views_code_embeddings():
    model, batch = _model(), _batch()
    embeds, mask = model.encoder_inputs(batch)
    first, second = _views()
    union = model.union
    expected = model.model.shared(union.item_tokens(batch.items)).sum(-2)
    real = batch.items >= 0
    torch.testing.assert_close(embeds[real], expected[real])
    assert union.positions == first.positions + second.positions
    # the second view's codes sit after every first-view token
    assert int(union.offsets[first.positions]) == first.vocab_size


@pytest.mark.parametrize("own", [False, True])
def test_both_views_learn_a_deterministic_next_item(own):
    model = _model(second_decoder=own)
    model.train()
    histories = torch.arange(ITEMS).unsqueeze(1)
    targets = (torch.arange(ITEMS) + 5) % ITEMS
    batch = HistoryBatch(histories, torch.arange(ITEMS))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        opt.zero_grad()
        model.loss(batch, targets).backward()
        opt.step()
    model.eval()
    for view in model.views():
        found = constrained_beam_search(view, batch, SIDTrie.from_catalog(view.catalog),
                                        beam=4, topk=1)
        assert torch.equal(found.items[:, 0], targets)


def test_a_second_decoder_is_the_second_views_alone():
    model, batch = _model(second_decoder=True), _batch()
    first, second = model.views()
    empty = torch.zeros(3, 0, dtype=torch.long)

    def heads():
        with torch.no_grad():
            return [view.step(view.expand(view.start(batch), 1), empty) for view in (first, second)]

    before = heads()
    with torch.no_grad():
        for value in model.second_decoder.block.parameters():
            value.add_(0.1 * torch.randn_like(value))
    after = heads()
    torch.testing.assert_close(after[0], before[0])
    assert not torch.allclose(after[1], before[1], atol=1e-3)
    # one embedding table: both decoders read and write the same rows
    assert model.second_decoder.embed_tokens.weight is model.model.shared.weight


@pytest.mark.parametrize("own", [False, True])
def test_a_checkpoint_holds_the_second_view(tmp_path, own):
    model, batch = _model(second_weight=0.5, second_decoder=own), _batch()
    if own:
        with torch.no_grad():
            for value in model.second_decoder.block.parameters():
                value.add_(0.1 * torch.randn_like(value))
    model.save(tmp_path / "b")
    again = load_checkpoint(tmp_path / "b", _views()[0]).eval()
    assert isinstance(again, TwoViewT5)
    assert again.options["second_weight"] == 0.5
    assert (again.second_decoder is not None) == own
    if own:
        assert again.second_decoder.embed_tokens.weight is again.model.shared.weight
    trie = SIDTrie.from_catalog(_views()[1])
    expect = constrained_beam_search(model.views()[1], batch, trie, beam=5, topk=5)
    got = constrained_beam_search(again.views()[1], batch, trie, beam=5, topk=5)
    assert torch.equal(got.items, expect.items)
    torch.testing.assert_close(got.scores, expect.scores)
    if own:
        (tmp_path / "b" / "second_decoder.safetensors").unlink()
        with pytest.raises(DeepInterestError, match="second_decoder"):
            TwoViewT5.load(tmp_path / "b", _views()[0])
    (tmp_path / "b" / "second_view.safetensors").unlink()
    with pytest.raises(DeepInterestError, match="second view"):
        TwoViewT5.load(tmp_path / "b", _views()[0])


def test_views_of_other_items_are_refused():
    first, second = _views()
    with pytest.raises(DeepInterestError, match="different items"):
        TwoViewT5(catalog=first, second=SIDCatalog.from_codes(second.sids[:-1]), **SMALL)
    renamed = SIDCatalog([f"x{i}" for i in range(ITEMS)], second.sids, second.sizes)
    with pytest.raises(DeepInterestError, match="different items"):
        TwoViewT5(catalog=first, second=renamed, **SMALL)


def test_each_view_starts_from_its_own_codebooks():
    torch.manual_seed(1)
    first, second = _views()
    books = [torch.randn(3, 6), torch.randn(2, 6), torch.randn(2, 6)]
    other = [torch.randn(5, 4), torch.randn(3, 4)]
    model = _model()
    model.init_code_embeddings(books, other)
    single = T5Backbone(catalog=first, **SMALL)
    single.init_code_embeddings(books)
    rows = model.model.shared.weight
    torch.testing.assert_close(rows[:first.vocab_size][3:], single.model.shared.weight[3:])
    alone = _model()
    alone.init_code_embeddings(books)  # the second view's rows keep T5's init
    assert torch.equal(alone.model.shared.weight[first.vocab_size:],
                       _model().model.shared.weight[first.vocab_size:])
    assert not torch.equal(rows[first.vocab_size:], alone.model.shared.weight[first.vocab_size:])


def test_recommend_merges_the_views_beams():
    from deepinterest.eval.ensemble import fuse
    from deepinterest.eval.generative import recommend

    model = _model(seed=3)
    histories = [(3, 5), (0, 1, 11), (7,)]
    merged = recommend(model, model.catalog, histories, beam=6, topk=4)
    lists = [recommend(view, view.catalog, histories, beam=6, topk=6) for view in model.views()]
    expected = fuse(lists, topk=4)
    assert torch.equal(merged.items, expected.items)
    assert not torch.equal(lists[0].items[:, :4], lists[1].items[:, :4])  # the views differ
    # the first view is the protocol's: searched alone it is the model's own step
    alone = constrained_beam_search(model, HistoryBatch(torch.tensor([[-1, 3, 5]]),
                                                        torch.tensor([0])),
                                    SIDTrie.from_catalog(model.catalog), beam=6, topk=6)
    assert torch.equal(alone.items[0], lists[0].items[0])
    for mode in (True, False):  # searching the views leaves the model in its own mode
        model.train(mode)
        recommend(model, model.catalog, histories, beam=6, topk=4)
        assert model.training is mode
