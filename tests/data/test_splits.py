import pytest

from deepinterest.data.model import Item, from_sequences
from deepinterest.data.splits import leave_one_out


def _dataset(seqs):
    ids = sorted({i for s in seqs for i in s})
    return from_sequences("t", [Item(i) for i in ids], [(f"u{n}", s) for n, s in enumerate(seqs)])


def test_leave_one_out_targets_and_prefixes():
    ds = _dataset([["a", "b", "c", "d", "e"]])
    idx = {it.id: n for n, it in enumerate(ds.items)}
    sp = leave_one_out(ds)
    assert [(e.history, e.target) for e in sp.test] == [((0, 1, 2, 3), idx["e"])]
    assert [(e.history, e.target) for e in sp.valid] == [((0, 1, 2), idx["d"])]
    assert [(e.history, e.target) for e in sp.train] == [((0,), 1), ((0, 1), 2)]


def test_history_truncated_to_most_recent():
    seq = [f"i{n:02d}" for n in range(30)]
    sp = leave_one_out(_dataset([seq]), max_history=20)
    assert len(sp.test[0].history) == 20
    assert sp.test[0].history[0] == 9 and sp.test[0].history[-1] == 28
    assert all(len(e.history) <= 20 for e in sp.train)
    assert len(sp.train) == 27  # targets at positions 1..27


def test_short_users_only_train():
    sp = leave_one_out(_dataset([["a", "b"], ["a", "b", "c"]]))
    assert sp.skipped == 1
    assert len(sp.valid) == len(sp.test) == 1
    assert [e.user for e in sp.train] == [0]


def test_bad_max_history():
    with pytest.raises(ValueError):
        leave_one_out(_dataset([["a", "b", "c"]]), max_history=0)
