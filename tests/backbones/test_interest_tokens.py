"""Interest tokens: the history's strongest mined interests as extra T5 encoder inputs."""

import json

import pytest
import torch
from typer.testing import CliRunner

from deepinterest.backbones.base import HistoryBatch, InterestTable, SIDCatalog
from deepinterest.backbones.t5 import T5Backbone
from deepinterest.cli import app
from deepinterest.errors import DeepInterestError
from deepinterest.schemas.interests import descriptor_table

SMALL = dict(d_model=32, encoder_layers=1, decoder_layers=1, heads=2, d_kv=16, d_ff=64,
             dropout=0.0)


def _d(text, confidence, probability=None):
    return {"text": text, "confidence": confidence, "probability": probability}


ROWS = [{"item": "a", "descriptors": [_d("Skin care", 1.0), _d("gift", 0.5)]},
        {"item": "b", "descriptors": [_d("skin  care", 0.5, 0.5), _d("travel", 1.0)]},
        {"item": "c", "descriptors": [_d("gift", 1.0), _d("rare one", 1.0)]}]


def test_the_vocabulary_keeps_the_texts_on_most_items_and_weights_follow_labels():
    vocabulary, ids, weights = descriptor_table(ROWS, ["a", "b", "c", "z"], size=3, width=2)
    assert vocabulary == ["gift", "skin care", "rare one"]  # 2, 2, then 1-item texts A-Z
    assert ids == [[1, 0], [1, -1], [0, 2], [-1, -1]]  # travel is out of the vocabulary
    assert weights == [[1.0, 0.5], [0.25, 0.0], [1.0, 1.0], [0.0, 0.0]]


def _model(tokens=2, **extra) -> T5Backbone:
    # 6 items with unique SIDs; interests: items 0-2 "x" (id 0), items 3-5 "y" (id 1),
    # item 5 also "z" (id 2) with a small weight.
    catalog = SIDCatalog.from_codes(torch.tensor([(i // 2, i % 2) for i in range(6)]))
    ids = torch.tensor([[0, -1], [0, -1], [0, -1], [1, -1], [1, -1], [1, 2]])
    weights = torch.tensor([[1.0, 0], [1.0, 0], [1.0, 0], [1.0, 0], [1.0, 0], [1.0, 0.1]])
    table = InterestTable(("x", "y", "z"), ids, weights)
    torch.manual_seed(0)
    return T5Backbone(catalog=catalog, interest_tokens=tokens, interest_vocabulary=3,
                      interests=table, **SMALL, **extra).eval()


def _batch() -> HistoryBatch:
    return HistoryBatch(torch.tensor([[-1, 0, 1, 5], [-1, -1, -1, 3], [3, 4, 5, 5]]),
                        torch.tensor([0, 1, 2]))


def test_tokens_are_the_heaviest_interests_of_the_history_and_empty_slots_are_masked():
    model = _model()
    tokens, present = model.history_interests(_batch().items)
    assert tokens[0].tolist() == [0, 1] and present[0].tolist() == [True, True]
    assert tokens[1, 0].item() == 1 and present[1].tolist() == [True, False]
    assert tokens[2].tolist() == [1, 2]  # y four times, z twice at 0.1
    embeds, mask = model.encoder_inputs(_batch())
    assert embeds.shape == (3, 4 + 2, 32) and mask[:, 4:].tolist() == present.long().tolist()
    torch.testing.assert_close(embeds[0, 4], model.interest_embed.weight[0])


def test_left_padding_and_save_load_leave_the_output_unchanged(tmp_path):
    model, batch = _model(), _batch()
    wider = HistoryBatch(torch.cat([torch.full((3, 3), -1), batch.items], 1), batch.users)
    prefix = torch.tensor([[1], [3], [2]])
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
        expected = model.step(model.start(batch), prefix)
        torch.testing.assert_close(model.step(model.start(wider), prefix), expected,
                                   rtol=1e-5, atol=1e-5)
        model.save(tmp_path / "ckpt")
        loaded = T5Backbone.load(tmp_path / "ckpt", model.catalog).eval()
        assert torch.equal(loaded.step(loaded.start(batch), prefix), expected)
    assert loaded.interests.vocabulary == ("x", "y", "z")


def test_the_interests_change_what_the_model_predicts():
    model, batch = _model(), _batch()
    with torch.no_grad():
        model.interest_embed.weight.mul_(10.0)
        before = model.step(model.start(batch), torch.zeros((3, 0), dtype=torch.long))
        model.interest_ids[5] = torch.tensor([0, -1])  # item 5 now interested in x
        after = model.step(model.start(batch), torch.zeros((3, 0), dtype=torch.long))
    assert not torch.allclose(before[2], after[2]) and torch.equal(before[1], after[1])


def test_a_wrong_table_is_refused():
    with pytest.raises(DeepInterestError, match="needs the items' interests"):
        T5Backbone(catalog=_model().catalog, interest_tokens=2, interest_vocabulary=3, **SMALL)
    with pytest.raises(DeepInterestError, match="has 6 items and 3 descriptors"):
        _model().__class__(catalog=_model().catalog, interest_tokens=2, interest_vocabulary=4,
                           interests=_model().interests, **SMALL)


def test_di_run_trains_with_interest_tokens_and_keeps_plain_fingerprints(tmp_path, tiny_config):
    runner = CliRunner()
    path = tiny_config(tmp_path)
    path.write_text(path.read_text().replace("[train]\n", "[train]\ninterest_tokens = 3\n"))
    result = runner.invoke(app, ["run", "--config", str(path)])
    assert result.exit_code == 0, result.output
    sft = tmp_path / "work" / "sft"
    manifest = json.loads((sft / "manifest.json").read_text())
    assert manifest["config"]["train"]["interest_tokens"] == 3 and "interests" in manifest["inputs"]
    options = json.loads((sft / "best" / "backbone.json").read_text())["options"]
    assert options["interest_tokens"] == 3 and options["interest_vocabulary"] >= 3
    assert (sft / "best" / InterestTable.FILE).is_file()
    assert "[eval] done" in result.output
    plain = tmp_path / "plain"
    plain.mkdir()
    assert runner.invoke(app, ["run", "--config", str(tiny_config(plain))]).exit_code == 0
    manifest = json.loads((plain / "work" / "sft" / "manifest.json").read_text())
    assert "interest_tokens" not in manifest["config"]["train"]
    assert "interests" not in manifest["inputs"]
    assert "interest_tokens" not in json.loads(
        (plain / "work" / "sft" / "best" / "backbone.json").read_text())["options"]


def test_interest_tokens_need_interests_and_a_backbone_that_reads_them(tmp_path, tiny_config):
    from deepinterest.config import load_config
    from deepinterest.stages import train_sft

    path = tiny_config(tmp_path)
    path.write_text(path.read_text().replace("[train]\n", "[train]\ninterest_tokens = 3\n")
                    .replace("[tokenize]\n", "[mine]\nminers = []\n[tokenize]\n"))
    result = CliRunner().invoke(app, ["run", "--config", str(path)])
    assert result.exit_code != 0 and "needs the run's interests" in result.output
    cfg = load_config(path)
    assert cfg.train.interest_tokens == 3
    with pytest.raises(DeepInterestError, match="needs the run's interests"):
        train_sft(cfg)
    from deepinterest.config import TrainConfig
    from deepinterest.train.stage import build_backbone

    with pytest.raises(DeepInterestError, match="takes no interest tokens"):
        build_backbone(TrainConfig(backbone="causal-lm", interest_tokens=2), None, None, None)
