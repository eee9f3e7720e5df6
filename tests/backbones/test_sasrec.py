"""SASRec baseline: causal masking, padding, bucketing, evaluation protocol, training."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from deepinterest.backbones.sasrec import PAD_ITEM, SASRec
from deepinterest.data import Dataset, Example, Item, User, leave_one_out
from deepinterest.errors import DeepInterestError
from deepinterest.train.sasrec import (
    SASRecConfig,
    check_sasrec_items,
    collate,
    evaluate_sasrec,
    load_sasrec,
    make_batches,
    recommend_sasrec,
    sasrec_log_probs,
    train_sasrec,
    training_sequences,
)

NUM_ITEMS = 10


def cyclic_dataset(users: int = 5, length: int = 10) -> Dataset:
    """User u buys u, u+1, u+2, ... (mod 10): the next item is always the last one plus 1."""
    seqs = [tuple((u + k) % NUM_ITEMS for k in range(length)) for u in range(users)]
    items = [Item(str(i)) for i in range(NUM_ITEMS)]
    return Dataset("cyclic", items, [User(f"u{u}", s) for u, s in enumerate(seqs)])


def varied_dataset() -> Dataset:
    """Users of lengths 2..25 (one too short to validate, some longer than max_len + 1)."""
    gen = torch.Generator().manual_seed(1)
    users = [User(f"u{n}", tuple(torch.randint(0, 30, (n,), generator=gen).tolist()))
             for n in range(2, 26)]
    return Dataset("varied", [Item(str(i)) for i in range(30)], users)


def tiny_model(**kw) -> SASRec:
    torch.manual_seed(0)
    return SASRec(num_items=kw.pop("num_items", NUM_ITEMS), hidden=16, layers=2, heads=2,
                  dropout=0.0, max_len=kw.pop("max_len", 8)).eval()


FAST = dict(hidden=32, layers=1, heads=1, dropout=0.0, lr=1e-2, batch_size=8, threads=1)


def test_overfits_a_deterministic_pattern():
    dataset = cyclic_dataset()
    config = SASRecConfig(**FAST, epochs=80, eval_every=10, patience=100, max_len=8)
    result = train_sasrec(dataset, config, progress=False)
    splits = leave_one_out(dataset)
    assert evaluate_sasrec(result.model, splits.valid, ks=(1,))["hr@1"] == 1.0
    assert result.valid["hr@5"] == 1.0 and result.test["hr@5"] == 1.0
    assert result.history[-1].loss < 0.1


def test_changing_a_future_item_leaves_earlier_outputs_alone():
    model = tiny_model()
    items = torch.tensor([[PAD_ITEM, PAD_ITEM, 3, 1, 4, 1, 5, 9]])
    before = model(items)
    for pos in range(2, 8):
        changed = items.clone()
        changed[0, pos] = (changed[0, pos] + 1) % NUM_ITEMS
        after = model(changed)
        torch.testing.assert_close(after[0, :pos], before[0, :pos], rtol=0, atol=0)
        assert not torch.allclose(after[0, pos:], before[0, pos:])


def test_padding_does_not_change_the_scores():
    model = tiny_model()
    short = torch.tensor([[3, 1, 4]])
    padded = torch.tensor([[PAD_ITEM] * 5 + [3, 1, 4]])
    torch.testing.assert_close(model.score_last(padded), model.score_last(short))
    assert torch.isfinite(model(padded)).all()  # fully padded query rows give no NaN


def test_score_last_reads_the_position_after_the_last_item():
    model = tiny_model()
    items = torch.tensor([[2, 7, 1, 8]])
    expected = model(items)[0, -1] @ model.item_emb.weight[:NUM_ITEMS].T
    torch.testing.assert_close(model.score_last(items)[0], expected)
    assert model.score_last(items).shape == (1, NUM_ITEMS)  # the padding row is never scored


def test_training_sequences_hold_out_validation_and_test_targets():
    dataset = varied_dataset()
    seqs = training_sequences(dataset, max_len=20)
    expected = [u.items[:-2][-21:] if len(u.items) >= 3 else u.items for u in dataset.users]
    assert seqs == [s for s in expected if len(s) >= 2]
    assert max(len(s) for s in seqs) == 21


def test_collate_shifts_labels_by_one():
    inputs, labels = collate([(1, 2, 3, 4), (5, 6)])
    assert inputs.tolist() == [[1, 2, 3], [PAD_ITEM, PAD_ITEM, 5]]
    assert labels.tolist() == [[2, 3, 4], [PAD_ITEM, PAD_ITEM, 6]]


@pytest.mark.parametrize("batch_size", [1, 3, 7, 100])
def test_bucketing_yields_the_same_training_sequences(batch_size):
    seqs = training_sequences(varied_dataset(), max_len=20)
    lengths = [len(s) for s in seqs]
    gen = torch.Generator().manual_seed(0)
    bucketed = make_batches(lengths, batch_size, gen, bucket=True)
    plain = make_batches(lengths, batch_size, gen, bucket=False)
    for batches in (bucketed, plain):
        assert sorted(i for b in batches for i in b) == list(range(len(seqs)))
        assert Counter(seqs[i] for b in batches for i in b) == Counter(seqs)
    # Bucketed batches are contiguous in length: at most one length is shared between two.
    spans = sorted((min(lengths[i] for i in b), max(lengths[i] for i in b)) for b in bucketed)
    assert all(hi <= lo for (_, hi), (lo, _) in zip(spans, spans[1:]))


def test_same_seed_same_model_and_different_seed_differs(tmp_path):
    dataset = varied_dataset()
    config = SASRecConfig(**{**FAST, "dropout": 0.3}, epochs=3, max_len=20)
    first = train_sasrec(dataset, config, progress=False, out_dir=tmp_path)
    second = train_sasrec(dataset, config, progress=False)
    assert [h.loss for h in first.history] == [h.loss for h in second.history]
    for name, tensor in first.model.state_dict().items():
        assert torch.equal(tensor, second.model.state_dict()[name]), name
    other = train_sasrec(dataset, config.model_copy(update={"seed": 1}), progress=False)
    assert [h.loss for h in other.history] != [h.loss for h in first.history]
    # The saved model is the best state and scores exactly as the trained one.
    loaded, items = load_sasrec(tmp_path), torch.tensor([[1, 2, 3]])
    torch.testing.assert_close(loaded.score_last(items), first.model.eval().score_last(items))


class NextItemOracle(SASRec):
    """Scores only (last history item + 1) mod N: checks what the evaluator hands over."""

    def score_last(self, items: torch.Tensor) -> torch.Tensor:
        scores = torch.zeros(items.shape[0], self.num_items)
        scores[torch.arange(items.shape[0]), (items[:, -1] + 1) % self.num_items] = 1.0
        return scores


def test_evaluation_scores_each_examples_own_target():
    oracle = NextItemOracle(num_items=NUM_ITEMS, max_len=4)
    # Histories of mixed lengths (the evaluator sorts them), longer than max_len too.
    hists = [(1,), (2, 3, 4, 5, 6, 7), (5, 9), (0, 1, 2), (8,), (3, 3, 3, 3, 3)]
    right = [Example(u, h, (h[-1] + 1) % NUM_ITEMS) for u, h in enumerate(hists)]
    assert evaluate_sasrec(oracle, right, batch_size=4, ks=(1,))["hr@1"] == 1.0
    wrong = [Example(e.user, e.history, (e.target + 1) % NUM_ITEMS) if e.user % 2 else e
             for e in right]
    assert evaluate_sasrec(oracle, wrong, batch_size=4, ks=(1,))["hr@1"] == 0.5


def test_recommend_lists_each_historys_best_items_with_log_probabilities():
    model = tiny_model(num_items=30).train()  # dropout 0: the same scores in either mode
    hists = [(1,), (2, 3, 4, 5, 6, 7), (5, 9), (0, 1, 2), (8,)]  # mixed lengths, batch of 2
    recs = recommend_sasrec(model, hists, topk=5, batch_size=2)
    assert recs.items.shape == recs.scores.shape == (5, 5)
    for row, hist in enumerate(hists):  # each row alone, as scored one history at a time
        logp = torch.log_softmax(model.score_last(torch.tensor([hist])), dim=1)[0]
        top = logp.topk(5)
        assert recs.items[row].tolist() == top.indices.tolist()
        torch.testing.assert_close(recs.scores[row], top.values)
    assert model.training  # put back as it was
    assert recommend_sasrec(model, hists, topk=50).items.shape == (5, 30)  # the whole catalogue


def test_log_probs_of_given_items_are_the_full_softmax_and_padding_is_minus_inf():
    model = tiny_model(num_items=30).eval()
    hists = [(1,), (2, 3, 4, 5, 6, 7), (5, 9)]
    items = torch.tensor([[4, 0, -1], [29, 7, 7], [-1, -1, 3]])
    got = sasrec_log_probs(model, hists, items, batch_size=2)
    for row, hist in enumerate(hists):
        logp = torch.log_softmax(model.score_last(torch.tensor([hist])), dim=1)[0]
        for col, item in enumerate(items[row].tolist()):
            if item < 0:
                assert got[row, col] == float("-inf")
            else:
                torch.testing.assert_close(got[row, col], logp[item])


def test_saved_model_is_checked_against_the_catalogue(tmp_path):
    dataset = varied_dataset()
    config = SASRecConfig(**FAST, epochs=1, max_len=20)
    train_sasrec(dataset, config, progress=False, out_dir=tmp_path)
    ids = [item.id for item in dataset.items]
    check_sasrec_items(tmp_path, ids)
    for other in (ids[::-1], ids[:-1]):  # same size in another order; another size
        with pytest.raises(DeepInterestError, match="another catalogue"):
            check_sasrec_items(tmp_path, other)


def test_ties_count_against_the_target():
    model = tiny_model(num_items=30)
    with torch.no_grad():
        model.item_emb.weight.zero_()  # all 30 items score 0: the target ranks 30th, not 1st
    metrics = evaluate_sasrec(model, [Example(0, (1, 2), 3)], ks=(5, 10))
    assert metrics["hr@10"] == 0.0


def test_config_forbids_unknown_keys():
    with pytest.raises(ValueError):
        SASRecConfig(hiden=32)
