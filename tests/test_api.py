"""The public surface of ``import deepinterest``: documented, cheap to import, and the
calls behind every command behave as the commands do."""

import importlib.util
import pydoc
import subprocess
import sys

import pytest
from typer.testing import CliRunner

import deepinterest as di
from deepinterest.cli import app

PUBLIC = [name for name in di.__all__ if name != "__version__"]


def test_every_public_name_is_documented_and_listed_by_help():
    undocumented = [n for n in PUBLIC if not (getattr(di, n).__doc__ or "").strip()]
    assert not undocumented, f"public names without a docstring: {undocumented}"
    text = pydoc.render_doc(di, renderer=pydoc.plaintext)
    assert [n for n in PUBLIC if n not in text] == []


def test_no_public_name_is_shadowed_by_a_submodule():
    # `import deepinterest.X` rebinds the package attribute X to the submodule
    clashes = [n for n in PUBLIC if importlib.util.find_spec(f"deepinterest.{n}") is not None]
    assert clashes == []


def test_import_is_cheap():
    code = "import sys, deepinterest; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_bad_config_argument_is_a_clear_error(tmp_path):
    with pytest.raises(di.DeepInterestError, match="RunConfig, a path or None"):
        di.as_config(42)
    with pytest.raises(di.DeepInterestError, match="no metrics"):
        di.read_metrics(tmp_path)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, tiny_config):
    root = tmp_path_factory.mktemp("api")
    cfg = di.load_config(tiny_config(root))
    stages = []
    result = di.run(cfg, on_stage=stages.append, progress=False)
    return cfg, result, stages


def test_run_returns_each_stage_and_a_rerun_skips_them(tiny):
    cfg, result, stages = tiny
    assert [s.stage for s in result.stages] == [s.stage for s in stages] == \
        ["data", "mine", "tokenize", "train-sft", "eval", "baseline"]
    assert result.missing == () and not any(s.skipped for s in stages)
    again = di.run(cfg, progress=False)
    assert all(s.skipped for s in again.stages)
    assert di.train_sft(cfg, progress=False).skipped and di.evaluate_run(cfg).skipped
    metrics = di.read_metrics(result.workdir / "eval")
    assert set(metrics) == {"valid", "test"} and set(metrics["test"]) == \
        {"hr@5", "ndcg@5", "hr@10", "ndcg@10"}


def test_recommender_ranks_valid_distinct_items_best_first(tiny):
    cfg, _, _ = tiny
    model = di.load_recommender(cfg)
    user = model.dataset.users[5]
    recs = model.recommend(user.id, k=7)
    assert [r.rank for r in recs] == list(range(1, 8))
    assert len({r.item for r in recs}) == 7
    assert all(a.score >= b.score for a, b in zip(recs, recs[1:]))
    ids = {item.id: n for n, item in enumerate(model.dataset.items)}
    assert all(r.sid == tuple(model.catalog.sids[ids[r.item]].tolist()) for r in recs)
    # without a user token the model sees only the history, so both calls agree
    history = [model.dataset.items[i].id for i in user.items]
    assert model.recommend_histories([history], k=7)[0] == recs


def test_recommend_matches_the_command(tiny):
    cfg, result, _ = tiny
    user = di.load_dataset(result.workdir / "dataset").users[0].id
    recs = di.recommend(user, cfg, k=4)
    out = CliRunner().invoke(app, ["recommend", "--workdir", str(cfg.workdir), "--user", user,
                                   "-k", "4"])
    assert out.exit_code == 0, out.output
    assert [line.split()[2] for line in out.output.splitlines()[2:]] == [r.item for r in recs]


def test_recommender_refuses_bad_input(tiny):
    cfg, _, _ = tiny
    model = di.load_recommender(cfg)
    with pytest.raises(di.DeepInterestError, match="unknown user"):
        model.recommend("nobody")
    with pytest.raises(di.DeepInterestError, match="unknown item"):
        model.recommend_histories([["no-such-item"]])
    with pytest.raises(di.DeepInterestError, match="empty"):
        model.recommend_histories([[]])
    with pytest.raises(di.DeepInterestError, match="beam width"):
        model.recommend(model.dataset.users[0].id, k=model.beam + 1)
    with pytest.raises(di.DeepInterestError, match="no checkpoint"):
        di.load_recommender(cfg, checkpoint=cfg.workdir / "missing")


def test_ensemble_of_one_run_twice_recommends_as_the_run(tiny):
    cfg, _, _ = tiny
    model = di.load_recommender(cfg)
    ensemble = di.load_ensemble([cfg, cfg])
    user = model.dataset.users[3].id
    alone, merged = model.recommend(user, k=6), ensemble.recommend(user, k=6)
    assert [r.item for r in merged] == [r.item for r in alone]
    assert [r.sid for r in merged] == [r.sid for r in alone]
    # fused scores are the two members' beam probabilities summed: positive, at most 2
    assert all(0 < r.score <= 2 for r in merged)
    history = [model.dataset.items[i].id for i in model.dataset.users[3].items]
    assert [r.item for r in ensemble.recommend_histories([history], k=6)[0]] == \
        [r.item for r in alone]
    # a member with no weight changes nothing; rrf keeps one model's order too
    weighted = di.EnsembleRecommender([model, model], weights=[1.0, 0.0], rule="rrf")
    assert [r.item for r in weighted.recommend(user, k=6)] == [r.item for r in alone]


def test_ensemble_refuses_bad_members_and_settings(tiny, tmp_path):
    cfg, _, _ = tiny
    model = di.load_recommender(cfg)
    with pytest.raises(di.DeepInterestError, match="at least one"):
        di.EnsembleRecommender([])
    with pytest.raises(di.DeepInterestError, match="fusion rule"):
        di.EnsembleRecommender([model], rule="borda")
    with pytest.raises(di.DeepInterestError, match="one non-negative weight"):
        di.EnsembleRecommender([model, model], weights=[1.0])
    with pytest.raises(di.DeepInterestError, match="beam width"):
        di.EnsembleRecommender([model], candidates=model.beam + 1)
    with pytest.raises(di.DeepInterestError, match="beam width"):
        di.EnsembleRecommender([model]).recommend(model.dataset.users[0].id, k=model.beam + 1)
    other = di.Recommender(model.dataset, model.catalog, model.backbone, beam=model.beam)
    other._users = {"someone-else": 0}
    with pytest.raises(di.DeepInterestError, match="same dataset"):
        di.EnsembleRecommender([model, other])
