"""Collaborative interests: descriptors lent by co-purchases from the training split only."""

import json
from dataclasses import replace
from pathlib import Path

import pytest

from deepinterest.artifacts import write_manifest
from deepinterest.config import CollaborativeSpec, MineConfig
from deepinterest.data.model import Dataset, Item, User, save_dataset
from deepinterest.miners.collaborative import NEIGHBOURS, complete_rows
from deepinterest.miners.stage import mine_stage


def _dataset() -> Dataset:
    """a-b-c bought together in training; x only ever as a held-out target."""
    items = [Item(name, {"title": f"thing {name}"}) for name in ("a", "b", "c", "x", "y")]
    users = [User("u1", (0, 1, 2, 3, 4)),  # training part a b c; targets x (valid), y (test)
             User("u2", (1, 0, 2))]  # training part b; targets a, c
    return Dataset("tiny", items, users)


def _row(item: str, *pairs, label: int = 1) -> dict:
    return {"item": item, "failures": [], "quality": 1.0,
            "descriptors": [{"text": t, "confidence": c, "support": 1, "sources": ["m"],
                             "label": label, "probability": None, "labeler": "heuristic"}
                            for t, c in pairs]}


ROWS = [_row("a", ("morning routine", 1.0)),
        _row("b", ("morning routine", 0.5), ("sensitive skin", 1.0), label=0),
        _row("c", ("gift for a friend", 0.8)),
        _row("x", ("holiday travel", 1.0)),
        _row("y")]


def _texts(row: dict) -> list[str]:
    return [d["text"] for d in row["descriptors"]]


def test_an_item_borrows_its_neighbours_phrases_weighted_by_co_purchase():
    rows, counts = complete_rows(ROWS, _dataset(), CollaborativeSpec(weight=0.5, window=1))
    a = rows[0]
    # a's only neighbour at distance 1 in the training part is b (a-b; c is 2 away).
    assert _texts(a) == ["morning routine", "sensitive skin"]
    own, lent = a["descriptors"]
    assert own["confidence"] == pytest.approx(0.5 * 1.0 + 0.5 * 0.5)
    assert own["neighbour_share"] == pytest.approx(0.25 / 0.75, abs=1e-4)
    assert own["sources"] == ["m"] and own["label"] == 1  # the item's own record
    assert lent["confidence"] == 0.5 and lent["sources"] == [NEIGHBOURS]
    assert lent["label"] == 0 and lent["neighbour_share"] == 1.0  # the lender's label
    assert counts["items_completed"] == 3 and counts["borrowed_descriptors"] >= 3


def test_held_out_targets_lend_nothing_and_change_nothing():
    spec = CollaborativeSpec(weight=0.5, window=3)
    rows, _ = complete_rows(ROWS, _dataset(), spec)
    assert all("holiday travel" not in _texts(r) for r in rows if r["item"] != "x")
    assert rows[3] == ROWS[3] and rows[4] == ROWS[4]  # x, y: never in a training part
    moved = replace(_dataset(), users=[User("u1", (0, 1, 2, 4, 3)), User("u2", (1, 2, 0))])
    assert complete_rows(ROWS, moved, spec)[0] == rows


def test_top_k_cuts_and_a_failed_item_stays_failed():
    failed = {**_row("c"), "failures": [{"miner": "m", "error": "timeout"}]}
    rows, _ = complete_rows([*ROWS[:2], failed, *ROWS[3:]], _dataset(),
                            CollaborativeSpec(weight=0.5, top_k=1))
    assert len(rows[1]["descriptors"]) == 1 and rows[2] == failed


def test_the_stage_completes_and_keeps_old_fingerprints(tmp_path: Path):
    data = tmp_path / "dataset"
    data.mkdir()
    save_dataset(_dataset(), data)
    write_manifest(data, stage="data", config={}, inputs={}, counts={}, seconds=0.0)
    replies = {"a": {"descriptors": [{"text": "morning routine", "confidence": 0.9}]},
               "b": {"descriptors": [{"text": "sensitive skin", "confidence": 0.8}]},
               "c": {"descriptors": [{"text": "gift for a friend", "confidence": 0.7}]},
               "x": {"descriptors": [{"text": "holiday travel", "confidence": 0.9}]},
               "y": {"descriptors": []}}
    miners = [{"backend": "scripted", "options": {
        "replies": {k: json.dumps(v) for k, v in replies.items()}}}]
    plain = mine_stage(MineConfig(miners=miners), data, tmp_path / "plain", progress=False)
    manifest = json.loads((plain.path / "manifest.json").read_text())
    assert "collaborative" not in manifest["config"]
    cfg = MineConfig(miners=miners, collaborative={"weight": 0.3})
    done = mine_stage(cfg, data, tmp_path / "collab", progress=False)
    manifest = json.loads((done.path / "manifest.json").read_text())
    assert manifest["config"]["collaborative"]["weight"] == 0.3
    assert manifest["counts"]["collaborative"]["items_completed"] == 3
    items = {r["item"]: r for r in map(json.loads,
                                       (done.path / "items.jsonl").read_text().splitlines())}
    assert "sensitive skin" in _texts(items["a"]) and _texts(items["x"]) == ["holiday travel"]
    users = [json.loads(line) for line in (done.path / "users.jsonl").read_text().splitlines()]
    assert "gift for a friend" in [d["text"] for d in users[1]["descriptors"]]  # via b's a, c


def test_the_weight_must_leave_room_for_both_parts():
    with pytest.raises(ValueError):
        CollaborativeSpec(weight=1.0)
