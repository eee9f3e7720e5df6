import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from deepinterest.cli import app
from deepinterest.config import DataConfig, TokenizeConfig
from deepinterest.data.model import load_dataset
from deepinterest.data.prepare import prepare_dataset
from deepinterest.errors import DeepInterestError
from deepinterest.schemas.sids import SIDCatalog
from deepinterest.tokenizers.stage import (
    ItemTokenizer,
    auto_codebook_size,
    fit_sids,
    tokenize_items,
)

runner = CliRunner()


def test_auto_codebook_size():
    assert [auto_codebook_size(n) for n in (10, 80, 500, 2559, 2560, 12101)] == [4, 8, 32, 128,
                                                                                  256, 256]


def _clustered(n=400, d=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(12, d, generator=g) * 3
    return (centres[torch.arange(n) % 12] + 0.3 * torch.randn(n, d, generator=g)).numpy()


@pytest.mark.parametrize("quantizer", ["rkmeans", "rqvae"])
def test_fit_sids_unique_and_consistent_stats(quantizer):
    opts = {"epochs": 30, "hidden_dims": [32], "latent_dim": 8} if quantizer == "rqvae" else {}
    cfg = TokenizeConfig(quantizer=quantizer, levels=2, codebook_size=8, options=opts)
    result = fit_sids(_clustered(), cfg)
    sids = result.sids
    assert sids.shape == (400, 3)
    assert len({tuple(r) for r in sids.tolist()}) == 400 == result.stats["unique_sids"]
    tuples = {tuple(r) for r in sids[:, :2].tolist()}
    assert result.stats["unique_code_tuples"] == len(tuples)
    shared = sum(1 for r in sids[:, :2].tolist()
                 if (sids[:, :2] == torch.tensor(r)).all(1).sum() > 1)
    assert result.stats["collision_rate_before_suffix"] == pytest.approx(shared / 400)
    assert sids[:, 2].max() + 1 == result.stats["suffix_size"]


def test_balanced_last_level_cuts_collisions():
    base = TokenizeConfig(levels=2, codebook_size=8)
    plain = fit_sids(_clustered(), base).stats
    balanced = fit_sids(_clustered(), base.model_copy(update={"balanced_last_level": True})).stats
    assert balanced["collision_rate_before_balancing"] == pytest.approx(
        plain["collision_rate_before_suffix"])
    assert balanced["collision_rate_before_suffix"] < plain["collision_rate_before_suffix"]
    # moved items sit farther from their codewords: the reported error is the balanced codes'
    assert balanced["relative_mse_before_balancing"] == pytest.approx(plain["relative_mse"])
    assert balanced["relative_mse"] > plain["relative_mse"]


@pytest.fixture(scope="module")
def tokenized(tmp_path_factory):
    """The default dataset tokenized once with the bundled MiniLM encoder."""
    root = tmp_path_factory.mktemp("tok")
    prepare_dataset(DataConfig(), root / "dataset")
    cfg = TokenizeConfig(cache_dir=root / "cache")
    stage = tokenize_items(cfg, root / "dataset", root / "sids", progress=False)
    return root, cfg, stage


def test_tokenize_artifact(tokenized):
    root, cfg, stage = tokenized
    assert not stage.skipped
    out = root / "sids"
    stats = json.loads((out / "stats.json").read_text())
    dataset = load_dataset(root / "dataset")
    rows = [json.loads(line) for line in (out / "sids.jsonl").open()]
    assert [r["item"] for r in rows] == [it.id for it in dataset.items]
    assert stats["items"] == stats["unique_sids"] == len(dataset.items)
    assert len({tuple(r["sid"]) for r in rows}) == len(rows)
    for key in ("collision_rate_before_suffix", "usage", "perplexity", "reconstruction_mse"):
        assert key in stats
    assert len(stats["usage"]) == len(stats["perplexity"]) == cfg.levels
    assert (out / "code_usage.png").read_bytes()[:4] == b"\x89PNG"
    again = tokenize_items(cfg, root / "dataset", out, progress=False)
    assert again.skipped


def test_cold_start_reload_encodes_without_refitting(tokenized):
    root, _, _ = tokenized
    tok = ItemTokenizer(root / "sids")
    vectors = np.load(root / "sids" / "embeddings.npy")
    codes = tok.encode_vectors(vectors[:20])
    stored = torch.tensor([tok.sids[it.id] for it in load_dataset(root / "dataset").items[:20]])
    assert torch.equal(codes[:, :-1], stored[:, :-1])  # same codes as the fitted run
    # a re-encoded item counts as new: its suffix comes after every holder of its tuple
    holders = [sum(1 for s in tok.sids.values() if s[:-1] == tuple(r)) for r in
               stored[:, :-1].tolist()]
    assert codes[:, -1].tolist()[0] == holders[0]
    assert len({tuple(r) for r in codes.tolist()} & set(tok.sids.values())) == 0


def test_cli_tokenize_uses_overrides(tokenized, tmp_path):
    root, _, _ = tokenized
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[tokenize]\ncache_dir = "{root / "cache"}"\n')
    result = runner.invoke(app, ["tokenize", str(root / "dataset"), "--out", str(tmp_path / "s"),
                                 "--config", str(cfg), "--levels", "2", "--codebook-size", "16"])
    assert result.exit_code == 0, result.output
    stats = json.loads((tmp_path / "s" / "stats.json").read_text())
    assert stats["codebook_sizes"] == [16, 16] and stats["unique_sids"] == 500


def test_the_catalogue_has_a_token_for_every_code_of_the_codebooks(tokenized, tmp_path):
    root, _, _ = tokenized
    stats = json.loads((root / "sids" / "stats.json").read_text())
    catalog = SIDCatalog.load(root / "sids")
    assert catalog.sizes == (*stats["codebook_sizes"], stats["suffix_size"])
    # Codes no item uses keep their tokens: the sizes are the artifact's, not the largest
    # code seen (here every item's level-2 code is below 4, the codebook has 32).
    folder = tmp_path / "sids"
    folder.mkdir()
    rows = [json.loads(line) for line in (root / "sids" / "sids.jsonl").open()]
    with (folder / "sids.jsonl").open("w") as handle:
        for row in rows:
            handle.write(json.dumps({**row, "sid": [row["sid"][0], row["sid"][1] % 4,
                                                    *row["sid"][2:]]}) + "\n")
    (folder / "stats.json").write_text(json.dumps(stats))
    assert SIDCatalog.load(folder).sizes == catalog.sizes
    (folder / "stats.json").unlink()  # an artifact that kept no sizes: the largest code seen
    assert SIDCatalog.load(folder).sizes[1] == 4
    (folder / "stats.json").write_text(json.dumps({**stats, "suffix_size": 1}))
    with pytest.raises(DeepInterestError, match="do not fit the sizes"):
        SIDCatalog.load(folder)
