"""The mine stage: every item accounted for, ensembled and labelled, users without leaks."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from deepinterest.cli import app
from deepinterest.config import MineConfig
from deepinterest.miners.stage import mine_stage

runner = CliRunner()

ITEMS = {"A": "Trail Running Shoes", "B": "Insulated Water Bottle", "C": "Espresso Grinder",
         "D": "Milk Frother", "E": "Yoga Mat"}


def _answer(*pairs) -> str:
    return json.dumps({"descriptors": [{"text": t, "confidence": c} for t, c in pairs]})


def _dataset(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    (src / "user_sequence.txt").write_text("u1 A B C D\nu2 E A B\n")
    (src / "x.item").write_text("item_id:token\ttitle:token\n" +
                                "".join(f"{k}\t{v}\n" for k, v in ITEMS.items()))
    out = tmp_path / "dataset"
    result = runner.invoke(app, ["data", "prepare", str(src), "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


REPLIES_1 = {"A": _answer(("training for a first marathon", 0.9)),
             "B": _answer(("staying hydrated on long hikes", 0.8)),
             "C": _answer(("making cafe-quality coffee at home", 0.9)),
             "D": "I think this is a nice product.",  # never valid: recorded as failed
             "E": _answer(("a calm home workout routine", 0.7))}
REPLIES_2 = {**REPLIES_1, "A": _answer(("preparing for a first marathon", 0.6)),
             "C": _answer(("brewing cafe-quality coffee at home", 0.7),
                          ("impressing guests after dinner", 0.4))}


def _config(**extra) -> MineConfig:
    # D fails on purpose (1 of 5 items; 1 of 2 in a shard): allowed by the threshold here.
    settings = {"ensemble": {"kind": "vote", "options": {"min_votes": 2}},
                "max_failed_share": 0.5, **extra}
    return MineConfig(miners=[{"backend": "scripted", "label": "one",
                               "options": {"replies": REPLIES_1, "price_per_token": 0.001}},
                              {"backend": "scripted", "label": "two",
                               "options": {"replies": REPLIES_2}}], **settings)


@pytest.fixture(scope="module")
def mined(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mine")
    dataset = _dataset(tmp)
    result = mine_stage(_config(), dataset, tmp / "interests", progress=False)
    return tmp, dataset, result


def _rows(folder: Path, name: str) -> list[dict]:
    return [json.loads(line) for line in (folder / name).read_text().splitlines()]


def test_every_item_is_in_the_artifact_with_answers_or_failures(mined):
    tmp, _, result = mined
    rows = {r["item"]: r for r in _rows(result.path, "items.jsonl")}
    assert set(rows) == set(ITEMS)
    assert rows["D"]["descriptors"] == []
    assert {f["miner"] for f in rows["D"]["failures"]} == {"one", "two"}
    assert all("no JSON object" in f["error"] for f in rows["D"]["failures"])
    answer = rows["A"]["answers"]["one"]
    assert answer["prompt_version"] == "item.v1" and answer["attempts"] == 1
    assert answer["answer"]["descriptors"][0]["text"] == "training for a first marathon"


def test_vote_keeps_what_both_miners_support_and_labels_it(mined):
    _, _, result = mined
    rows = {r["item"]: r for r in _rows(result.path, "items.jsonl")}
    c = rows["C"]["descriptors"]
    assert len(c) == 1 and c[0]["support"] == 2 and c[0]["sources"] == ["one", "two"]
    assert c[0]["text"] == "making cafe-quality coffee at home"  # the more confident wording
    assert all(d["label"] in (0, 1) and 0 <= d["probability"] <= 1 for r in rows.values()
               for d in r["descriptors"])
    for row in rows.values():  # q = sum(c l) / sum(c)
        ds = row["descriptors"]
        total = sum(d["confidence"] for d in ds)
        expected = sum(d["confidence"] * d["label"] for d in ds) / total if total else 0.0
        assert row["quality"] == round(expected, 4)


def test_user_interests_come_from_items_before_the_validation_target(mined):
    _, _, result = mined
    users = {u["user"]: u for u in _rows(result.path, "users.jsonl")}
    items = {r["item"]: {d["text"] for d in r["descriptors"]}
             for r in _rows(result.path, "items.jsonl")}
    assert users["u1"]["items_used"] == 2  # A, B; C and D are the validation and test targets
    assert {d["text"] for d in users["u1"]["descriptors"]} <= items["A"] | items["B"]
    assert not {d["text"] for d in users["u1"]["descriptors"]} & items["C"]
    assert users["u2"]["items_used"] == 1


def test_report_counts_tokens_dollars_and_failures(mined):
    _, _, result = mined
    report = json.loads((result.path / "report.json").read_text())
    one, two = report["miners"]["one"], report["miners"]["two"]
    assert (one["items"], one["answered"], one["failed"]) == (5, 4, 1)
    words = sum(len(r.split()) for r in REPLIES_1.values()) + len(REPLIES_1["D"].split())
    assert one["tokens_out"] == words  # D is asked twice (one re-ask)
    assert one["dollars"] == pytest.approx(words * 0.001)
    assert two["dollars"] == 0.0 and one["agreement"] > 0
    assert result.counts["failed_items"] == 1


def test_rerun_asks_failed_items_again_is_then_skipped_and_a_new_ensemble_rebuilds(mined):
    tmp, dataset, _ = mined
    again = mine_stage(_config(), dataset, tmp / "interests", progress=False)
    assert not again.skipped and again.counts["failed_items"] == 1  # D was asked again
    fixed = {**REPLIES_1, "D": _answer(("frothing milk for lattes", 0.9))}
    answered = MineConfig(miners=[{"backend": "scripted", "options": {"replies": fixed}}])
    assert mine_stage(answered, dataset, tmp / "interests", progress=False).counts[
        "failed_items"] == 0
    assert mine_stage(answered, dataset, tmp / "interests", progress=False).skipped
    union = _config(ensemble={"kind": "union"})
    rebuilt = mine_stage(union, dataset, tmp / "interests", progress=False)
    assert not rebuilt.skipped
    rows = {r["item"]: r for r in _rows(rebuilt.path, "items.jsonl")}
    assert len(rows["C"]["descriptors"]) == 2  # union keeps the one-miner descriptor too


def test_di_mine_cli_and_report(tmp_path):
    dataset = _dataset(tmp_path)
    cfg = tmp_path / "c.toml"
    cfg.write_text('[[mine.miners]]\nbackend = "embedding"\n')
    out = tmp_path / "interests"
    result = runner.invoke(app, ["mine", str(dataset), "--config", str(cfg), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "embedding" in result.output and "desc/item" in result.output
    report = runner.invoke(app, ["mine", "report", str(out)])
    assert report.exit_code == 0 and report.output.splitlines()[0].startswith("miner")
    for column in ("agree =", "pos rate =", "mean quality ="):  # every column is explained
        assert column in report.output
    bad = runner.invoke(app, ["mine", "report", str(tmp_path)])
    assert bad.exit_code == 2 and "report.json" in bad.output


def test_an_answer_cache_path_is_not_handed_to_the_embedding_miners_cache_flag(tmp_path):
    cfg = MineConfig(miners=[{"backend": "embedding"}], cache=tmp_path / "answers.sqlite")
    result = mine_stage(cfg, _dataset(tmp_path), tmp_path / "interests", progress=False)
    assert result.counts["items"] > 0


def test_shards_merge_into_what_one_run_writes(tmp_path):
    dataset = _dataset(tmp_path)
    whole = mine_stage(_config(), dataset, tmp_path / "whole", progress=False)
    shards = []
    for index in range(2):
        cfg = _config(shard=f"{index}/2")
        shards.append(mine_stage(cfg, dataset, tmp_path / f"s{index}", progress=False).path)
    assert len(_rows(shards[0], "items.jsonl")) == 3 and _rows(shards[0], "users.jsonl") == []
    result = runner.invoke(app, ["mine", "merge", str(dataset), *map(str, shards),
                                 "--out", str(tmp_path / "merged")])
    assert result.exit_code == 0, result.output
    merged = tmp_path / "merged"
    for name in ("items.jsonl", "users.jsonl"):
        assert (merged / name).read_text() == (whole.path / name).read_text(), name
    same = json.loads((merged / "manifest.json").read_text())
    assert same["config"] == json.loads((whole.path / "manifest.json").read_text())["config"]
    missing = runner.invoke(app, ["mine", "merge", str(dataset), str(shards[0]),
                                  "--out", str(tmp_path / "m2")])
    assert missing.exit_code == 2 and "shards [1] of 2 are missing" in missing.output


def test_a_bad_shard_is_refused():
    with pytest.raises(ValueError, match="shard must be 'I/N'"):
        _config(shard="2/2")


def test_users_asked_of_a_miner_see_only_titles_before_the_validation_target(tmp_path):
    from deepinterest.data.model import load_dataset
    from deepinterest.miners.users import user_requests

    dataset = _dataset(tmp_path)
    asked = {r.key: r.evidence["history"] for r in user_requests(load_dataset(dataset))}
    assert asked == {"u1": [ITEMS["A"], ITEMS["B"]], "u2": [ITEMS["E"]]}
    replies = {**REPLIES_1, "u1": _answer(("an active outdoor life", 0.8)), "u2": "no"}
    cfg = MineConfig(miners=[{"backend": "scripted", "options": {"replies": replies}}],
                     users="miner", max_failed_share=0.5)
    result = mine_stage(cfg, dataset, tmp_path / "interests", progress=False)
    users = {u["user"]: u for u in _rows(result.path, "users.jsonl")}
    assert users["u1"]["descriptors"] == [{"text": "an active outdoor life", "confidence": 0.8}]
    assert users["u2"]["descriptors"] == [] and "no JSON object" in users["u2"]["error"]


def test_a_classifier_learns_the_teachers_labels_on_a_sample(tmp_path):
    dataset = _dataset(tmp_path)
    cfg = _config(ensemble={"kind": "union"},
                  labeler={"kind": "classifier", "sample": 3,
                           "teacher": {"kind": "judge", "options": {
                               "miner": "scripted",
                               "miner_options": {"judge_pattern": [1, 0]}}}})
    result = mine_stage(cfg, dataset, tmp_path / "interests", progress=False)
    rows = _rows(result.path, "items.jsonl")
    labelers = {d["labeler"] for r in rows for d in r["descriptors"]}
    assert labelers == {"classifier", "judge:scripted"}
    for row in rows:  # the sampled items keep the judge's labels, 1, 0, 1, ... in order
        if row["descriptors"] and row["descriptors"][0]["labeler"] == "judge:scripted":
            assert [d["label"] for d in row["descriptors"]] == \
                [1 - j % 2 for j in range(len(row["descriptors"]))]
    assert all(d["label"] in (0, 1) for r in rows for d in r["descriptors"])


def test_a_captioner_describes_images_first_and_the_caption_joins_the_evidence(tmp_path):
    from deepinterest.data.model import Dataset, Item, load_dataset, save_dataset
    from deepinterest.artifacts import write_manifest

    source = load_dataset(_dataset(tmp_path))
    items = [Item(it.id, it.fields, ("https://img.example/a.jpg",) if it.id == "A" else ())
             for it in source.items]
    folder = tmp_path / "with-images"
    folder.mkdir()
    save_dataset(Dataset(source.name, items, source.users, source.attributes), folder)
    write_manifest(folder, stage="data", config={}, inputs={}, counts={}, seconds=0.0)
    caption = json.dumps({"caption": "A pair of blue running shoes with white soles."})
    cfg = _config(captioner={"backend": "scripted", "options": {"replies": {"A": caption}}})
    result = mine_stage(cfg, folder, tmp_path / "interests", progress=False)
    rows = {r["item"]: r for r in _rows(result.path, "items.jsonl")}
    assert rows["A"]["caption"] == "A pair of blue running shoes with white soles."
    assert rows["B"]["caption"] is None  # no image, not asked
    report = json.loads((result.path / "report.json").read_text())
    assert report["miners"]["captioner"]["items"] == 1
    assert report["miners"]["captioner"]["answered"] == 1


def test_item_requests_carry_the_caption_and_the_first_image():
    from deepinterest.data.model import Item
    from deepinterest.miners.stage import item_requests

    items = [Item("A", {"title": "Shoes", "brand": "Acme"}, ("a.jpg", "b.jpg")), Item("B")]
    first, second = item_requests(items, {"A": "Blue shoes."})
    assert first.evidence == {"title": "Shoes", "brand": "Acme", "caption": "Blue shoes."}
    assert first.image == "a.jpg" and second.image is None and second.evidence == {}


def test_a_limited_run_counts_only_the_users_its_items_give_interests(tmp_path):
    dataset = _dataset(tmp_path)  # u1 A B C D (A, B before validation), u2 E A B (E)
    cfg = MineConfig(miners=[{"backend": "scripted", "options": {"replies": REPLIES_1}}],
                     limit=2)  # items A and B only
    result = mine_stage(cfg, dataset, tmp_path / "interests", progress=False)
    assert result.counts["items"] == 2
    assert (result.counts["users"], result.counts["users_without_interests"]) == (1, 1)


def test_mine_report_and_merge_have_help_of_their_own():
    for sub, usage in (("report", "Usage: di mine report DIR"),
                       ("merge", "Usage: di mine merge DATASET SHARD_DIR...")):
        result = runner.invoke(app, ["mine", sub, "--help"])
        assert result.exit_code == 0 and result.output.startswith(usage), result.output
        assert "--budget" not in result.output  # not `di mine`'s own options
    whole = runner.invoke(app, ["mine", "--help"])
    assert whole.exit_code == 0 and "--budget" in whole.output
