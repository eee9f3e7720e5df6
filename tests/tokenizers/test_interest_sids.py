"""Interest-enhanced SIDs: which descriptors join which text or vector, provenance, refusals."""

import functools
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from deepinterest.artifacts import read_manifest
from deepinterest.cli import app
from deepinterest.config import DataConfig, MineConfig, RunConfig, TokenizeConfig
from deepinterest.data.model import load_dataset
from deepinterest.data.prepare import prepare_dataset
from deepinterest.data.synthetic import SyntheticConfig
from deepinterest.encoders import build_encoder
from deepinterest.errors import DeepInterestError
from deepinterest.layout import RunLayout
from deepinterest.miners.stage import mine_stage
from deepinterest.pipeline import _tokenize
from deepinterest.tokenizers.interests import (
    InterestSource,
    interest_text,
    select,
    stage_config,
    with_caption,
)
from deepinterest.tokenizers.stage import ItemTokenizer, tokenize_items

pytestmark = pytest.mark.filterwarnings("ignore:.*items have no row:UserWarning")
runner = CliRunner()
FIELDS = ["title", "brand", "categories", "description"]
# Unrelated phrases, so the ensembler keeps each as its own descriptor, in confidence order.
PHRASES = ["training for a first marathon", "a birthday gift for a grandmother",
           "fixing a leaking kitchen tap", "keeping a newborn warm at night",
           "learning to play jazz piano", "repotting houseplants in spring"]
N_ITEMS, MINED = 40, 36  # the last 4 items are not mined: missing from items.jsonl


def _small(seed: int = 0) -> DataConfig:
    return DataConfig(synthetic=SyntheticConfig(n_items=N_ITEMS, n_users=50, n_motivations=4,
                                                seed=seed))


def _replies(ids: list[str], shift: int = 0) -> dict[str, str]:
    """Four descriptors per item, confidence falling; every 7th item gets an invalid reply."""
    replies = {}
    for n, item in enumerate(ids):
        picks = [PHRASES[(n + shift + j) % len(PHRASES)] for j in range(4)]
        body = {"descriptors": [{"text": t, "confidence": 0.9 - 0.2 * j}
                                for j, t in enumerate(picks)]}
        replies[item] = "no idea" if n % 7 == 3 else json.dumps(body)
    return replies


def _mine(dataset: Path, out: Path, shift: int = 0):
    ids = [it.id for it in load_dataset(dataset).items]
    cfg = MineConfig(miners=[{"backend": "scripted", "options": {"replies": _replies(ids, shift),
                                                                 "retries": 0}}],
                     ensemble={"kind": "union"}, users="none", limit=MINED,
                     max_failed_share=0.2,  # every 7th item fails on purpose
                     labeler={"kind": "judge", "options": {
                         "miner": "scripted", "miner_options": {"judge_pattern": [1, 0, 1]}}})
    return mine_stage(cfg, dataset, out, progress=False)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("isids")
    prepare_dataset(_small(), root / "dataset")
    _mine(root / "dataset", root / "interests")
    return root


def _cfg(root: Path, **extra) -> TokenizeConfig:
    return TokenizeConfig(cache_dir=root / "cache", interests=str(root / "interests"), **extra)


def _rows(root: Path) -> dict[str, dict]:
    lines = (root / "interests" / "items.jsonl").read_text().splitlines()
    return {r["item"]: r for r in map(json.loads, lines)}


def _expected(root: Path, labels: str, limit: int | None) -> list[list[str]]:
    """Each item's descriptors as the spec says, computed from items.jsonl directly."""
    rows, out = _rows(root), []
    for item in load_dataset(root / "dataset").items:
        records = rows.get(item.id, {}).get("descriptors", [])
        texts = [d["text"] for d in records if labels == "all" or d["label"] == 1]
        out.append(texts[:limit] if limit else texts)
    return out


@functools.cache
def _encoder():
    return build_encoder(TokenizeConfig().encoder.name)


def _encode(texts: list[str]) -> np.ndarray:
    """The default encoder's vectors, computed here without the stage's cache."""
    return _encoder().encode(texts)


def _stats(folder: Path) -> dict:
    return json.loads((folder / "stats.json").read_text())


def test_the_scripted_artifact_has_what_the_tests_rely_on(world):
    rows = _rows(world)
    assert len(rows) == MINED
    labels = [d["label"] for r in rows.values() for d in r["descriptors"]]
    assert set(labels) == {0, 1}  # both kinds, so the label filter has something to drop
    assert sum(1 for r in rows.values() if not r["descriptors"]) == 5  # items 3, 10, 17, 24, 31


@pytest.mark.parametrize("labels,limit", [("positive", None), ("all", 2)])
def test_text_mode_embeds_item_text_then_descriptors_in_order(world, tmp_path, labels, limit):
    cfg = _cfg(world, interest_labels=labels, max_interests=limit)
    tokenize_items(cfg, world / "dataset", tmp_path / "sids", progress=False)
    items = load_dataset(world / "dataset").items
    chosen = _expected(world, labels, limit)
    texts = [it.text(FIELDS) + (f"; interests: {'; '.join(d)}" if d else "")
             for it, d in zip(items, chosen)]
    assert "; interests: " in texts[0] and texts[-1] == items[-1].text(FIELDS)
    stored = np.load(tmp_path / "sids" / "embeddings.npy")
    np.testing.assert_allclose(stored, _encode(texts), atol=1e-5)
    stats = _stats(tmp_path / "sids")["interests"]
    total = sum(map(len, chosen))
    assert stats["descriptors_used"] == total
    assert stats["items_enhanced"] == sum(1 for d in chosen if d)
    assert stats["items_enhanced"] + stats["items_without_interests"] == N_ITEMS
    assert stats["descriptors_per_item"] == round(total / N_ITEMS, 4)
    assert stats["descriptors_per_enhanced_item"] == round(total / stats["items_enhanced"], 4)
    if limit:
        assert max(map(len, chosen)) == limit and stats["descriptors_dropped_by_limit"] > 0
    else:
        assert stats["descriptors_dropped_by_label"] == sum(
            1 for r in _rows(world).values() for d in r["descriptors"] if d["label"] != 1)


def test_fusion_vectors_follow_the_formula(world, tmp_path):
    w = 0.3
    tokenize_items(_cfg(world, interest_mode="fusion", interest_weight=w), world / "dataset",
                   tmp_path / "sids", progress=False)
    items = load_dataset(world / "dataset").items
    chosen = _expected(world, "positive", None)
    item_vecs = _encode([it.text(FIELDS) for it in items])
    interest_vecs = _encode(["; ".join(d) or "-" for d in chosen])
    expected = item_vecs.copy()
    for n, descriptors in enumerate(chosen):
        if descriptors:
            mixed = (1 - w) * item_vecs[n] + w * interest_vecs[n]
            expected[n] = mixed / np.linalg.norm(mixed)
    stored = np.load(tmp_path / "sids" / "embeddings.npy")
    np.testing.assert_allclose(stored, expected, atol=1e-5)
    plain = [n for n, d in enumerate(chosen) if not d]
    assert len(plain) == 9  # 5 items without descriptors, 4 never mined
    stats = _stats(tmp_path / "sids")["interests"]
    assert (stats["mode"], stats["weight"], stats["labels"]) == ("fusion", w, "positive")


def test_stats_and_manifest_record_the_interests_used(world, tmp_path):
    with pytest.warns(UserWarning, match="4 of 40 items have no row"):
        result = tokenize_items(_cfg(world), world / "dataset", tmp_path / "sids",
                                progress=False)
    interests = read_manifest(world / "interests")
    manifest = read_manifest(tmp_path / "sids")
    assert manifest["inputs"]["interests"] == interests["fingerprint"]
    assert "interests" not in manifest["config"]  # the path is not a setting of the SIDs
    assert manifest["config"]["interest_mode"] == "text"
    assert "interest_weight" not in manifest["config"]  # unused in text mode
    stats = _stats(tmp_path / "sids")
    entry = stats["interests"]
    assert entry["path"] == str(world / "interests")
    assert entry["fingerprint"] == interests["fingerprint"]
    assert (entry["mode"], entry["labels"], entry["weight"], entry["max_interests"]) == (
        "text", "positive", None, None)
    assert entry["items_missing"] == N_ITEMS - MINED and entry["captions_used"] == 0
    assert any("4 of 40 items have no row" in w for w in stats["warnings"])
    assert result.counts["items_enhanced"] == entry["items_enhanced"]
    spec = json.loads((tmp_path / "sids" / "tokenizer.json").read_text())
    assert spec["interests"]["mode"] == "text"


def test_new_interests_retokenize_and_unchanged_ones_skip(world, tmp_path):
    cfg, out = _cfg(world), tmp_path / "sids"
    first = tokenize_items(cfg, world / "dataset", out, progress=False)
    assert tokenize_items(cfg, world / "dataset", out, progress=False).skipped
    weight = cfg.model_copy(update={"interest_weight": 0.9})  # text mode: weight unused
    assert tokenize_items(weight, world / "dataset", out, progress=False).skipped
    _mine(world / "dataset", tmp_path / "other", shift=1)
    moved = cfg.model_copy(update={"interests": str(tmp_path / "other")})
    again = tokenize_items(moved, world / "dataset", out, progress=False)
    assert not first.skipped and not again.skipped
    assert read_manifest(out)["inputs"]["interests"] == read_manifest(tmp_path / "other")[
        "fingerprint"]
    plain = tokenize_items(TokenizeConfig(cache_dir=world / "cache"), world / "dataset", out,
                           progress=False)
    assert not plain.skipped and "interests" not in read_manifest(out)["inputs"]


def test_plain_config_keeps_its_old_fingerprint():
    keys = set(stage_config(TokenizeConfig()))
    assert keys == {"encoder", "text_fields", "quantizer", "levels", "codebook_size", "options",
                    "balanced_last_level", "seed"}
    fusion = stage_config(TokenizeConfig(interests="x", interest_mode="fusion"))
    assert {"interest_mode", "interest_labels", "interest_weight", "max_interests"} <= set(fusion)


def test_interests_of_another_dataset_are_refused(world, tmp_path):
    prepare_dataset(_small(seed=1), tmp_path / "dataset")
    with pytest.raises(DeepInterestError) as err:
        tokenize_items(_cfg(world), tmp_path / "dataset", tmp_path / "sids", progress=False)
    message = str(err.value)
    assert str(world / "interests" / "manifest.json") in message
    assert "mined from another dataset artifact" in message
    assert not (tmp_path / "sids").exists()


@pytest.mark.parametrize("target,words", [("dataset", "a 'data' artifact, not an interests"),
                                          ("nowhere", "interests folder not found")])
def test_a_folder_that_is_not_interests_is_refused(world, tmp_path, target, words):
    cfg = TokenizeConfig(cache_dir=world / "cache", interests=str(world / target))
    with pytest.raises(DeepInterestError, match=words):
        tokenize_items(cfg, world / "dataset", tmp_path / "sids", progress=False)


def test_a_broken_items_file_is_named_with_its_line(world, tmp_path):
    import shutil

    copy = tmp_path / "interests"
    shutil.copytree(world / "interests", copy)
    lines = (copy / "items.jsonl").read_text().splitlines()
    lines[2] = '{"item": "NOPE", "descriptors": []}'
    (copy / "items.jsonl").write_text("\n".join(lines) + "\n")
    cfg = _cfg(world).model_copy(update={"interests": str(copy)})
    with pytest.raises(DeepInterestError, match=r"items\.jsonl:3: item 'NOPE' is not in"):
        tokenize_items(cfg, world / "dataset", tmp_path / "sids", progress=False)


def test_selection_and_text_rules():
    rows = {"a": {"item": "a", "caption": "a red tube", "descriptors": [
        {"text": "x", "label": 1}, {"text": "y", "label": 0}, {"text": "z", "label": None},
        {"text": "w", "label": 1}]}}
    source = InterestSource(Path("i"), "fp", rows)
    picked = select(["a", "b"], source, TokenizeConfig(max_interests=1))
    assert picked.descriptors == [["x"], []] and picked.captions == ["a red tube", None]
    assert (picked.missing, picked.dropped_by_label, picked.dropped_by_limit) == (1, 2, 1)
    everything = select(["a"], source, TokenizeConfig(interest_labels="all"))
    assert everything.descriptors == [["x", "y", "z", "w"]]
    assert interest_text("Lip Balm", ["x", "w"]) == "Lip Balm; interests: x; w"
    assert interest_text("Lip Balm", []) == "Lip Balm"
    assert with_caption("Lip Balm", "a red tube") == "Lip Balm; a red tube"
    assert with_caption("Lip Balm", None) == "Lip Balm"


def test_cli_tokenize_with_interests(world, tmp_path):
    config = tmp_path / "c.toml"
    config.write_text(f'[tokenize]\ncache_dir = "{world / "cache"}"\n')
    args = ["tokenize", str(world / "dataset"), "--config", str(config),
            "--interests", "mine", "--interest-mode", "fusion", "--interest-weight", "0.25",
            "--max-interests", "1", "--out", str(tmp_path / "s")]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    entry = _stats(tmp_path / "s")["interests"]
    assert entry["path"] == str(world / "interests")  # 'mine': the dataset's sibling folder
    assert (entry["mode"], entry["weight"], entry["max_interests"]) == ("fusion", 0.25, 1)
    bad = runner.invoke(app, args[:-2] + ["--interest-mode", "both", "--out", str(tmp_path / "b")])
    assert bad.exit_code == 2 and "interest_mode" in bad.output


def test_run_resolves_mine_to_the_runs_interests(world, tmp_path):
    cfg = RunConfig(workdir=world, tokenize=_cfg(world).model_copy(update={"interests": "mine"}))
    run = RunLayout(world)
    result = _tokenize(cfg, run, False)
    assert _stats(result.path)["interests"]["path"] == str(world / "interests")
    off = cfg.model_copy(update={"mine": MineConfig(miners=[])})
    with pytest.raises(DeepInterestError, match=r"\[mine\] has no miners"):
        _tokenize(off, run, False)


def test_cold_start_embeds_like_the_fit(world, tmp_path):
    tokenize_items(_cfg(world, interest_mode="fusion"), world / "dataset", tmp_path / "sids",
                   progress=False)
    tok = ItemTokenizer(tmp_path / "sids")
    items = load_dataset(world / "dataset").items
    chosen = _expected(world, "positive", None)
    given = {it.id: d for it, d in zip(items, chosen) if d}
    codes = tok.encode_items(items[:8], interests=given)
    fitted = torch.tensor([tok.sids[it.id] for it in items[:8]])
    assert torch.equal(codes[:, :-1], fitted[:, :-1])
    plain = tok.encode_items(items[:8])  # no descriptors: the plain item vector
    vectors = _encode([it.text(FIELDS) for it in items[:8]])
    assert torch.equal(plain[:, :-1], tok.quantizer.encode(torch.from_numpy(vectors)))
    unfitted = ItemTokenizer.__new__(ItemTokenizer)
    unfitted.spec, unfitted._encoder = {**tok.spec, "interests": None}, tok._encoder
    with pytest.raises(DeepInterestError, match="fitted without interests"):
        unfitted.encode_items(items[:1], interests=given)


def test_first_mode_names_the_interest_in_the_first_code(world, tmp_path):
    cfg = _cfg(world, interest_mode="first", interest_labels="all")
    tokenize_items(cfg, world / "dataset", tmp_path / "sids", progress=False)
    items = load_dataset(world / "dataset").items
    chosen = _expected(world, "all", None)
    item_vecs = _encode([it.text(FIELDS) for it in items])
    head = item_vecs.copy()  # no descriptors: the item vector stands for the interests too
    enhanced = [n for n, d in enumerate(chosen) if d]
    head[enhanced] = _encode(["; ".join(chosen[n]) for n in enhanced])
    stored = np.load(tmp_path / "sids" / "embeddings.npy")
    np.testing.assert_allclose(stored, np.concatenate([head, item_vecs], axis=1), atol=1e-5)
    tok = ItemTokenizer(tmp_path / "sids")
    first = {}
    for n in enhanced:  # the same interests, the same first code, whatever the item text
        first.setdefault(tuple(chosen[n]), set()).add(tok.sids[items[n].id][0])
    assert len(first) > 1 and all(len(codes) == 1 for codes in first.values())
    assert (tok.quantizer.prefix_dims, tok.quantizer.prefix_levels) == (head.shape[1], 1)
    assert read_manifest(tmp_path / "sids")["config"]["interest_levels"] == 1
    assert _stats(tmp_path / "sids")["interests"]["levels"] == 1
    given = {items[n].id: chosen[n] for n in enhanced}
    codes = tok.encode_items(items[:8], interests=given)  # cold start embeds like the fit
    assert torch.equal(codes[:, :-1], torch.tensor([tok.sids[it.id] for it in items[:8]])[:, :-1])


@pytest.mark.parametrize("extra", [{"quantizer": "rqvae"}, {"interest_levels": 3}])
def test_first_mode_needs_split_rkmeans_levels(extra):
    with pytest.raises(ValueError, match="interest_mode = 'first' needs"):
        TokenizeConfig(interests="x", interest_mode="first", **extra)


def test_first_mode_refuses_the_image_slot_that_would_mix_its_halves():
    with pytest.raises(ValueError, match="cannot be combined"):
        TokenizeConfig(interests="x", interest_mode="first", image_weight=0.3)
    TokenizeConfig(interests="x", interest_mode="fusion", image_weight=0.3)  # still allowed
