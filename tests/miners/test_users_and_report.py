"""Users' interests use only the items before the validation target; recovery scoring."""

import numpy as np

from deepinterest.data.model import Item, from_sequences
from deepinterest.miners.report import recovery
from deepinterest.miners.users import aggregate_user_interests, history_before_validation


def _rows(table: dict[str, list[tuple[str, float, float | None]]]) -> dict:
    return {item: {"descriptors": [{"text": t, "confidence": c, "probability": p}
                                   for t, c, p in ds]} for item, ds in table.items()}


def test_history_before_validation():
    assert history_before_validation((1, 2, 3, 4, 5)) == (1, 2, 3)
    assert history_before_validation((1, 2)) == (1, 2)  # no validation target: all


def test_user_interests_never_see_the_validation_or_test_target():
    items = [Item(x) for x in "ABCDE"]
    dataset = from_sequences("t", items, [("u1", ["A", "B", "C", "D"]), ("u2", ["E", "A"])])
    rows = _rows({"A": [("hiking trips", 0.8, 1.0)], "B": [("hiking trips", 0.5, 1.0),
                                                        ("home barista", 0.9, 0.5)],
                  "C": [("validation target only", 1.0, 1.0)],
                  "D": [("test target only", 1.0, 1.0)],
                  "E": [("gift giving", 0.4, None)]})
    users = {u["user"]: u for u in aggregate_user_interests(dataset, rows, top_k=8)}
    u1 = users["u1"]
    assert u1["items_used"] == 2
    # hiking: 0.8 + 0.5 = 1.3; barista: 0.9 * 0.5 = 0.45; rescaled by the top score
    assert u1["descriptors"] == [{"text": "hiking trips", "confidence": 1.0},
                                 {"text": "home barista", "confidence": round(0.45 / 1.3, 4)}]
    assert {d["text"] for d in users["u2"]["descriptors"]} == {"gift giving", "hiking trips"}


class _Lookup:
    """An encoder whose vectors are one-hot by a fixed table (exact, no model)."""

    def __init__(self, table: dict[str, int], dim: int = 4):
        self.table, self.dim = table, dim

    def encode(self, texts):
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            out[row, self.table[text]] = 1.0
        return out


def test_recovery_maps_descriptors_to_the_nearest_planted_phrase():
    planted = {"motivations": [{"id": "m1", "phrase": "p1"}, {"id": "m2", "phrase": "p2"},
                               {"id": "m3", "phrase": "p3"}, {"id": "m4", "phrase": "p4"}],
               "items": {"a": {"motivations": ["m1", "m2"]}, "b": {"motivations": ["m3"]}}}
    enc = _Lookup({"p1": 0, "p2": 1, "p3": 2, "p4": 3, "x1": 0, "x4": 3, "x3": 2})
    scores = recovery(planted, {"good": {"a": ["x1"], "b": ["x3"]},
                                "bad": {"a": ["x4"], "b": []}}, encoder=enc)
    assert scores["good"] == {"items": 2, "recall": 0.75, "precision": 1.0,
                              "chance_recall": 0.25}
    assert scores["bad"]["recall"] == 0.0 and scores["bad"]["precision"] == 0.0
