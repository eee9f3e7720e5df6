"""A run with ``[hybrid] enabled``: SASRec trained on the run's dataset, its lists merged
with the generative model's wherever the run ranks (``di eval``, ``di recommend``)."""

import json

import pytest
from typer.testing import CliRunner

import deepinterest as di
from deepinterest.cli import app
from deepinterest.data.splits import leave_one_out
from deepinterest.errors import DeepInterestError
from deepinterest.eval.ensemble import fuse
from deepinterest.eval.generative import ranks_in, recommend
from deepinterest.eval.metrics import metrics_from_ranks
from deepinterest.layout import RunLayout
from deepinterest.train.checkpoints import open_trained
from deepinterest.train.sasrec import load_sasrec, recommend_sasrec

HYBRID = """
[hybrid]
enabled = true
weight = 1.5
candidates = 15
[hybrid.sasrec]
hidden = 16
layers = 1
dropout = 0.0
epochs = 2
threads = 1
"""


@pytest.fixture(scope="module")
def hybrid_run(tmp_path_factory, tiny_with, run_chain):
    return run_chain(tiny_with(tmp_path_factory.mktemp("hybrid"), HYBRID))


def _by_hand(cfg, histories, users, k):
    """The generative beam and SASRec's list merged as [hybrid] says, from the parts."""
    layout = RunLayout(cfg.workdir)
    trained = open_trained(layout.dataset, layout.sids, layout.checkpoint)
    beam = recommend(trained.backbone, trained.catalog, histories, users=users,
                     beam=cfg.eval.beam, topk=cfg.eval.beam,
                     max_history=cfg.split.max_history)
    sasrec = recommend_sasrec(load_sasrec(layout.sasrec), histories,
                              topk=cfg.hybrid.candidates)
    return fuse([beam, sasrec], weights=[1.0, cfg.hybrid.weight], rule=cfg.hybrid.rule,
                topk=k)


def test_the_run_trains_sasrec_and_eval_scores_the_merge(hybrid_run):
    cfg, stages = hybrid_run
    layout = RunLayout(cfg.workdir)
    assert [s.stage for s in stages] == ["data", "mine", "tokenize", "train-sft", "sasrec",
                                         "eval", "baseline"]
    assert di.read_metrics(layout.sasrec)["valid"]["ndcg@10"] >= 0.0
    dataset = di.load_dataset(layout.dataset)
    valid = leave_one_out(dataset, max_history=cfg.split.max_history).valid
    merged = _by_hand(cfg, [e.history for e in valid], [e.user for e in valid], 10)
    expected = metrics_from_ranks(ranks_in(merged, [e.target for e in valid], topk=10),
                                  cfg.eval.ks).values
    assert di.read_metrics(layout.eval)["valid"] == pytest.approx(expected, abs=1e-12)
    saved = json.loads((layout.eval / "metrics.json").read_text())
    assert saved["hybrid"] == {"weight": 1.5, "rule": "rrf", "candidates": 15}
    assert di.RunConfig().hybrid.enabled  # the default chain ranks this way too


def test_serving_ranks_with_the_same_merge(hybrid_run):
    cfg, _ = hybrid_run
    model = di.load_recommender(cfg)
    user = model.dataset.users[3]
    got = [r.item for r in model.recommend(user.id, k=5)]
    merged = _by_hand(cfg, [user.items], [3], 5)
    assert got == [model.dataset.items[i].id for i in merged.items[0].tolist()]


def test_a_new_weight_rescores_without_retraining_and_off_restores_the_plain_eval(
        hybrid_run, tmp_path, tiny_with):
    cfg, _ = hybrid_run
    layout = RunLayout(cfg.workdir)
    before = di.read_metrics(layout.eval)
    cfg.hybrid.weight = 0.25
    stages = []
    di.run(cfg, on_stage=stages.append, progress=False)
    skipped = {s.stage: s.skipped for s in stages}
    assert skipped["sasrec"] and skipped["train-sft"] and not skipped["eval"]
    assert json.loads((layout.eval / "metrics.json").read_text())["hybrid"]["weight"] == 0.25
    cfg.hybrid.enabled = False  # the generative model alone, as a run without [hybrid]
    di.run(cfg, progress=False)
    plain = tiny_with(tmp_path)
    di.run(plain, progress=False)
    assert di.read_metrics(layout.eval) == di.read_metrics(RunLayout(plain.workdir).eval)
    assert di.read_metrics(layout.eval) != before


def test_eval_without_a_trained_sasrec_fails_before_writing(tmp_path, tiny_with):
    cfg = tiny_with(tmp_path, HYBRID)
    di.prepare_data(cfg.data, RunLayout(cfg.workdir).dataset)
    di.tokenize_items(RunLayout(cfg.workdir).dataset, RunLayout(cfg.workdir).sids, cfg)
    di.train_sft(cfg, progress=False)
    with pytest.raises(DeepInterestError, match="no finished SASRec"):
        di.evaluate_run(cfg)
    assert not RunLayout(cfg.workdir).eval.exists()
    with pytest.raises(DeepInterestError, match="no finished SASRec"):
        di.load_recommender(cfg)
    path = tmp_path / "tiny.toml"
    out = CliRunner().invoke(app, ["train", "--stage", "sasrec", "--config", str(path)])
    assert out.exit_code == 0, out.output
    assert "[sasrec] done" in out.output
    evaluated = CliRunner().invoke(app, ["eval", "--config", str(path)])
    assert evaluated.exit_code == 0, evaluated.output
    assert "merged with SASRec by rrf, weight 1.5" in evaluated.output


def test_a_users_own_sasrec_folder_and_files_beside_it_survive(tmp_path, tiny_with):
    cfg = tiny_with(tmp_path, HYBRID)
    layout = RunLayout(cfg.workdir)
    di.prepare_data(cfg.data, layout.dataset)
    beside, own = layout.root / "notes.txt", layout.sasrec / "mine.txt"
    own.parent.mkdir(parents=True)
    beside.write_text("beside"), own.write_text("mine")
    with pytest.raises(DeepInterestError):  # not a sasrec stage folder: refused
        di.train_sasrec(cfg, progress=False)
    assert own.read_text() == "mine" and beside.read_text() == "beside"
    own.unlink(), own.parent.rmdir()
    assert di.train_sasrec(cfg, progress=False).stage == "sasrec"
    assert beside.read_text() == "beside" and di.train_sasrec(cfg, progress=False).skipped


def test_the_learned_merge_is_fitted_by_eval_and_served_as_fitted(hybrid_run):
    from deepinterest.eval.generative import hybrid_candidates
    from deepinterest.eval.rerank import load_reranker
    from deepinterest.train.sasrec import load_companion

    cfg, _ = hybrid_run
    root = cfg.workdir.parent
    path = root / "learned.toml"  # the run's config (as written) with the learned merge
    path.write_text((root / "tiny.toml").read_text().replace(
        "weight = 1.5\n", 'weight = 1.5\nrule = "learned"\n'))
    cfg = di.load_config(path)
    stages = []
    di.run(cfg, on_stage=stages.append, progress=False)
    skipped = {s.stage: s.skipped for s in stages}
    assert skipped["sasrec"] and skipped["train-sft"] and not skipped["eval"]
    layout = RunLayout(cfg.workdir)
    reranker, _ = load_reranker(layout.eval)  # fitted on validation, saved beside the metrics
    trained = open_trained(layout.dataset, layout.sids, layout.checkpoint)
    companion = load_companion(layout.sasrec, trained.dataset, cfg.hybrid)
    test = leave_one_out(trained.dataset, max_history=cfg.split.max_history).test

    def by_hand(examples, k):
        cands = hybrid_candidates(trained.backbone, trained.catalog,
                                  [e.history for e in examples], companion,
                                  users=[e.user for e in examples], beam=cfg.eval.beam,
                                  max_history=cfg.split.max_history)
        return reranker.rerank(cands, k)

    ranks = ranks_in(by_hand(test, 10), [e.target for e in test], topk=10)
    expected = metrics_from_ranks(ranks, cfg.eval.ks).values
    assert di.read_metrics(layout.eval)["test"] == pytest.approx(expected, abs=1e-12)
    model = di.load_recommender(cfg)
    user = model.dataset.users[3]
    got = [r.item for r in model.recommend(user.id, k=5)]
    from deepinterest.data.splits import Example
    ranked = by_hand([Example(user=3, history=tuple(user.items), target=-1)], 5)
    assert got == [model.dataset.items[i].id for i in ranked.items[0].tolist()]
    with pytest.raises(DeepInterestError, match="fitted for another checkpoint"):
        di.load_recommender(cfg, checkpoint=layout.sft / "last")
    fitted = (layout.eval / "reranker.json").stat().st_mtime_ns
    path.write_text(path.read_text().replace("weight = 1.5\n", "weight = 3\n"))
    out = CliRunner().invoke(app, ["eval", "--config", str(path)])
    assert out.exit_code == 0, out.output
    # up to date: the learned merge fits its own weighing, so [hybrid] weight is not its input
    assert (layout.eval / "reranker.json").stat().st_mtime_ns == fitted
    assert "merged with SASRec by a reranker fitted on validation" in out.output
