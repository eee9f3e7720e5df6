"""A run with a second SID view (``[tokenize.second]``, ``train.backbone = "t5-views"``):
two tokenize stages, one model, and every ranking (validation, ``di eval``, serving) the
merge of both views' beams."""

import json

import pytest

import deepinterest as di
from deepinterest.backbones.t5_views import TwoViewT5
from deepinterest.data.splits import leave_one_out
from deepinterest.eval.ensemble import fuse
from deepinterest.eval.generative import ranks_in, recommend
from deepinterest.eval.metrics import metrics_from_ranks
from deepinterest.layout import RunLayout
from deepinterest.train.checkpoints import open_trained

SECOND = '\n[tokenize.second]\ninterests = "mine"\ninterest_mode = "fusion"\n'


@pytest.fixture(scope="module")
def two_views(tmp_path_factory, tiny_with, run_chain):
    return run_chain(tiny_with(tmp_path_factory.mktemp("views"), SECOND, "t5-views"))


def test_the_run_tokenizes_both_views_and_trains_one_two_view_model(two_views):
    cfg, stages = two_views
    layout = RunLayout(cfg.workdir)
    assert [s.stage for s in stages] == ["data", "mine", "tokenize", "tokenize", "train-sft",
                                         "eval", "baseline"]
    assert [s.path for s in stages[2:4]] == [layout.sids, layout.second_sids]
    manifest = json.loads((layout.second_sids / "manifest.json").read_text())
    assert manifest["config"]["interest_mode"] == "fusion"
    trained = open_trained(layout.dataset, layout.sids, layout.checkpoint)
    assert isinstance(trained.backbone, TwoViewT5)
    second = [json.loads(line)["sid"] for line in (layout.second_sids / "sids.jsonl").open()]
    assert trained.backbone.second.sids.tolist() == second


def test_eval_and_serving_rank_the_merge_of_both_views(two_views):
    cfg, _ = two_views
    layout = RunLayout(cfg.workdir)
    trained = open_trained(layout.dataset, layout.sids, layout.checkpoint)
    test = leave_one_out(trained.dataset, max_history=cfg.split.max_history).test
    histories = [e.history for e in test]
    lists = [recommend(view, view.catalog, histories, beam=cfg.eval.beam, topk=cfg.eval.beam,
                       max_history=cfg.split.max_history) for view in trained.backbone.views()]
    merged = fuse(lists, topk=max(cfg.eval.ks))
    expected = metrics_from_ranks(ranks_in(merged, [e.target for e in test]), cfg.eval.ks)
    assert di.read_metrics(layout.eval)["test"] == pytest.approx(expected.values, abs=1e-12)
    model = di.load_recommender(cfg)
    user = trained.dataset.users[3]
    served = [r.item for r in model.recommend(user.id, k=10)]
    one = fuse([recommend(view, view.catalog, [user.items], beam=cfg.eval.beam,
                          topk=cfg.eval.beam, max_history=cfg.split.max_history)
                for view in trained.backbone.views()], topk=10)
    assert served == [trained.dataset.items[i].id for i in one.items[0].tolist()]


def test_a_change_to_the_second_view_retokenizes_it_and_retrains(two_views):
    cfg, _ = two_views
    changed = cfg.model_copy(deep=True)
    changed.tokenize.second = {**cfg.tokenize.second, "interest_weight": 0.3}
    stages = {str(s.path): s.skipped for s in di.run(changed, progress=False).stages}
    layout = RunLayout(cfg.workdir)
    assert stages[str(layout.sids)] and not stages[str(layout.second_sids)]
    assert not stages[str(layout.sft)]


@pytest.mark.parametrize("backbone, second, message", [
    ("t5", SECOND, "learns one"), ("t5-views", "", "learns two")])
def test_a_view_and_a_backbone_that_disagree_fail_before_any_stage(
        tmp_path, tiny_with, backbone, second, message):
    cfg = tiny_with(tmp_path, second, backbone)
    with pytest.raises(di.DeepInterestError, match=message):
        di.run(cfg, progress=False)
    assert not (tmp_path / "work" / "dataset").exists()


def test_second_view_settings_are_checked_with_the_config(tmp_path, tiny_with):
    for bad, message in (('levels = 0', "second view's settings: levels"),
                         ('second = { levels = 2 }', "third view")):
        with pytest.raises(di.DeepInterestError, match=message):
            tiny_with(tmp_path, f"\n[tokenize.second]\n{bad}\n", "t5-views")
    assert di.RunConfig().tokenize.second_view() is None


def _bench_views(layout, *args):
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    out = subprocess.run(
        [sys.executable, str(root / "benchmarks" / "bench_views.py"), "--dataset",
         str(layout.dataset), "--sids", str(layout.sids), "--second-sids",
         str(layout.second_sids), "--config", str(layout.config), *args],
        cwd=root, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()  # training's epoch lines, the record's path, figures
    start = max(n for n, line in enumerate(lines) if line.endswith(".json")) + 1
    return dict(line.strip().rsplit("  ", 1) for line in lines[start:])


def _sasrec(layout, out, max_history):
    """A small SASRec saved on the run's dataset; its validation metrics."""
    from deepinterest.train.sasrec import SASRecConfig, evaluate_sasrec, train_sasrec

    dataset = di.load_dataset(layout.dataset)
    config = SASRecConfig(hidden=16, layers=1, epochs=2, dropout=0.0, threads=1)
    result = train_sasrec(dataset, config, out_dir=out, progress=False)
    return evaluate_sasrec(result.model, leave_one_out(dataset, max_history=max_history).valid).values


def test_bench_views_scores_what_di_eval_scores_and_trains_and_times(two_views, tmp_path):
    cfg, _ = two_views
    layout = RunLayout(cfg.workdir)
    # the run's own finished training folder: read back, not trained again
    sasrec = _sasrec(layout, tmp_path / "sasrec", cfg.split.max_history)
    figures = _bench_views(layout, "--out", str(layout.sft), "--results-dir", str(tmp_path),
                           "--sasrec", str(tmp_path / "sasrec"), "--sasrec-weight", "0", "1",
                           "--hybrid-rule", "probability")
    valid = di.read_metrics(layout.eval)["valid"]
    for metric in ("hr@5", "ndcg@5", "hr@10", "ndcg@10"):
        assert float(figures[f"merged {metric}"]) == round(valid[metric], 4)
        # SASRec's top 20 scores as its full ranking; weighing it 0 leaves the views' merge
        assert float(figures[f"sasrec {metric}"]) == round(sasrec[metric], 4)
        assert figures[f"hybrid 0 {metric}"] == figures[f"merged {metric}"]
    assert "hybrid 1 ndcg@10" in figures
    learned = _bench_views(layout, "--out", str(layout.sft), "--results-dir", str(tmp_path),
                           "--sasrec", str(tmp_path / "sasrec"), "--hybrid-rule", "learned",
                           "--split", "test")
    # the reranker (fitted on validation) ranks test users beside the rrf hybrid
    assert 0.0 <= float(learned["learned ndcg@10"]) <= float(learned["learned hr@10"]) <= 1.0
    assert "hybrid 1 ndcg@10" in learned and "merged ndcg@10" in learned
    trained = _bench_views(layout, "--out", str(tmp_path / "out"), "--epochs", "1",
                           "--second-weight", "0.5", "--second-decoder",
                           "--rl-epochs", "1", "--rl-out", str(tmp_path / "rl"),
                           "--results-dir", str(tmp_path))
    assert trained["epochs run"] == "1" and (tmp_path / "out" / "best").is_dir()
    # GRPO tuned the two-view model and the record scores its best checkpoint
    assert trained["rl best epoch"] in ("0", "1") and (tmp_path / "rl" / "best").is_dir()
    rl_result = json.loads((tmp_path / "rl" / "rl_result.json").read_text())
    assert rl_result["epochs_run"] == 1
    saved = json.loads((tmp_path / "out" / "best" / "backbone.json").read_text())
    assert saved["options"]["second_weight"] == 0.5 and saved["options"]["second_decoder"]
    timed = _bench_views(layout, "--time-steps", "2", "--second-weight", "0.5",
                         "--second-decoder", "--results-dir", str(tmp_path))
    assert float(timed["t5-views s/step"]) > 0 and float(timed["t5 s/step"]) > 0


def test_a_users_own_folder_where_the_second_view_goes_survives(tmp_path, tiny_with):
    cfg = tiny_with(tmp_path, SECOND, "t5-views")
    own = RunLayout(cfg.workdir).second_sids
    own.mkdir(parents=True)
    (own / "notes.txt").write_text("mine")
    with pytest.raises(di.DeepInterestError):
        di.run(cfg, progress=False)
    assert (own / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in own.iterdir()) == ["notes.txt"]
    assert not (RunLayout(cfg.workdir).sft).exists()  # nothing trained on a missing view
