"""Exact, hand-worked checks of dedupe, the iterative k-core and sequence ordering."""

from deepinterest.data.kcore import (
    Interaction,
    KCoreReport,
    dedupe,
    items_in_order,
    kcore_filter,
    kcore_with_report,
    sequences_by_user,
)


def make(rows: list[tuple[str, str, int]]) -> list[Interaction]:
    return [Interaction(u, i, t, n) for n, (u, i, t) in enumerate(rows)]


# k = 2, a three-step cascade:
#   round 1: u1 has 1 interaction -> dropped; x falls to 1 (u2)
#   round 2: x has 1 -> dropped; u2 falls to 1 (y)
#   round 3: u2 has 1 -> dropped; y falls to 2 (u3, u4): stays
#   round 4: nothing changes -> u3, u4 x y, z survive.
CASCADE = make([
    ("u1", "x", 1),
    ("u2", "x", 2),
    ("u3", "y", 3),
    ("u2", "y", 4),
    ("u4", "y", 5),
    ("u3", "z", 6),
    ("u4", "z", 7),
])


def test_kcore_cascade_needs_three_rounds():
    result = kcore_with_report(CASCADE, 2)
    assert [(x.user, x.item) for x in result.interactions] == [
        ("u3", "y"), ("u4", "y"), ("u3", "z"), ("u4", "z")]
    assert result.report == KCoreReport(k=2, rounds=3, users_before=4, items_before=3,
                                        interactions_before=7, users_after=2, items_after=2,
                                        interactions_after=4)
    assert result.report.as_dict()["rounds"] == 3


def test_kcore_single_pass_would_be_wrong():
    # One pass only removes u1; the fixed point also removes x and u2.
    survivors = {x.user for x in kcore_filter(CASCADE, 2)}
    assert survivors == {"u3", "u4"}


def test_kcore_k3_exact():
    # Users a, b, c each rate p, q, r (a 3x3 block: a 3-core); d rates p, q, s;
    # s has one interaction -> dropped in round 1, then d has 2 -> dropped in round 2.
    rows = [(u, i, 0) for u in "abc" for i in "pqr"] + [("d", "p", 0), ("d", "q", 0),
                                                         ("d", "s", 0)]
    result = kcore_with_report(make(rows), 3)
    assert {x.user for x in result.interactions} == {"a", "b", "c"}
    assert {x.item for x in result.interactions} == {"p", "q", "r"}
    assert len(result.interactions) == 9
    assert result.report.rounds == 2
    assert (result.report.users_before, result.report.items_before) == (4, 4)


def test_kcore_nothing_survives():
    result = kcore_with_report(make([("a", "p", 0), ("b", "q", 0)]), 2)
    assert result.interactions == []
    assert (result.report.users_after, result.report.items_after) == (0, 0)


def test_kcore_k1_and_k0_return_input():
    rows = make([("a", "p", 0), ("b", "q", 0)])
    for k in (0, 1):
        result = kcore_with_report(rows, k)
        assert result.interactions == rows
        assert result.report.rounds == 0
        assert result.report.interactions_after == 2


def test_kcore_already_a_core_takes_zero_rounds():
    rows = make([(u, i, 0) for u in "ab" for i in "pq"])
    assert kcore_with_report(rows, 2).report.rounds == 0


def test_dedupe_keeps_earliest_timestamp_then_file_order():
    rows = make([
        ("a", "p", 50),  # 0: later duplicate of (a, p) by time
        ("a", "q", 10),  # 1
        ("a", "p", 20),  # 2: earliest (a, p): kept
        ("b", "p", 30),  # 3: tie with 4, first in file: kept
        ("b", "p", 30),  # 4
    ])
    assert [x.order for x in dedupe(rows)] == [1, 2, 3]


def test_dedupe_lets_kcore_count_distinct_items():
    # Without dedupe, u's two reviews of p would make u look like a 2-core user.
    rows = make([("u", "p", 1), ("u", "p", 2), ("v", "p", 3), ("v", "q", 4), ("w", "q", 5),
                 ("w", "p", 6)])
    assert "u" in {x.user for x in kcore_filter(rows, 2)}
    assert "u" not in {x.user for x in kcore_filter(dedupe(rows), 2)}


def test_sequences_sorted_by_time_then_file_order():
    rows = make([
        ("b", "p", 30),  # b appears first in the file
        ("a", "q", 20),
        ("a", "r", 10),
        ("b", "s", 30),  # tie with b's p: p comes first (file order)
        ("a", "p", 20),  # tie with a's q: q first
        ("b", "t", 5),
    ])
    assert sequences_by_user(rows) == [("b", ["t", "p", "s"]), ("a", ["r", "q", "p"])]
    assert sequences_by_user(rows)[0].user == "b"
    assert sequences_by_user(reversed(rows)) == sequences_by_user(rows)


def test_items_in_order_of_first_appearance():
    rows = make([("a", "q", 9), ("b", "p", 1), ("c", "q", 0), ("a", "r", 0)])
    assert items_in_order(rows) == ["q", "p", "r"]
    assert items_in_order(reversed(rows)) == ["q", "p", "r"]
