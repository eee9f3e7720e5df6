"""The shared epoch loop on a toy task: exact resume, early stopping, eval cadence, scalars."""

import json
import random
import time

import numpy as np
import pytest
import torch
from pydantic import BaseModel
from torch import nn

from deepinterest.errors import DeepInterestError
from deepinterest.eval.metrics import Metrics
from deepinterest.train.distributed import DistInfo
from deepinterest.train.loop import (
    BEST,
    LAST,
    STATE_FILE,
    LoopSettings,
    Step,
    Task,
    epoch_batches,
    record_dict,
    run_epochs,
    write_folder,
)

ALONE = DistInfo(rank=0, world=1, local_rank=0, device=torch.device("cpu"))
N = 10
X = torch.randn(N, 4, generator=torch.Generator().manual_seed(0))
Y = X @ torch.tensor([1.0, -2.0, 0.5, 3.0])
LENGTHS = torch.tensor([1, 2, 3, 1, 2, 3, 1, 2, 3, 4])


class ToyConfig(BaseModel):
    lr: float = 0.05
    threads: int | None = None


class Stop(Exception):
    pass


def _toy(config: ToyConfig, out=None, *, init_seed=0, stop_at_step=None) -> Task:
    """A linear model behind dropout; its step draws from every global RNG the loop saves."""
    torch.manual_seed(init_seed)
    model = nn.Sequential(nn.Dropout(0.3), nn.Linear(4, 1))
    opt = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=0.9)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.7)
    calls = [0]

    def step(rows, n_global):
        calls[0] += 1
        if calls[0] == stop_at_step:
            raise Stop  # a kill in the middle of an epoch
        noise = random.random() + float(np.random.rand())  # Python's and NumPy's streams
        loss = ((model(X[rows]).squeeze(-1) - Y[rows] - 0.01 * noise) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        return loss.item()

    @torch.no_grad()
    def evaluate():
        model.eval()
        return Metrics(N, {"ndcg@10": -float(((model(X).squeeze(-1) - Y) ** 2).mean())})

    def save_best(epoch, valid):
        state = {k: v.tolist() for k, v in model.state_dict().items()}
        write_folder(out / BEST, ALONE, lambda tmp: (tmp / "best.json").write_text(
            json.dumps({"epoch": epoch, "valid": valid, "state": state})))

    return Task(model=model, optimizer=opt, scheduler=sched, lengths=LENGTHS, step=step,
                evaluate=evaluate, save_best=save_best, config=config,
                resume_free=("threads",))


def _settings(**extra) -> LoopSettings:
    return LoopSettings(**{**dict(epochs=5, batch_size=3, seed=7, eval_every=1), **extra})


def _run(task, out, **extra):
    return run_epochs(task, _settings(**extra), out_dir=out, info=ALONE, progress=False)


def _same_history(a, b):
    keep = ("epoch", "loss", "valid", "lr", "scalars")
    return [[getattr(r, k) for k in keep] for r in a.history] == \
        [[getattr(r, k) for k in keep] for r in b.history]


def test_resume_after_a_kill_equals_an_uninterrupted_run(tmp_path):
    straight_task = _toy(ToyConfig(), tmp_path / "a")
    straight = _run(straight_task, tmp_path / "a")

    with pytest.raises(Stop):  # epochs of 4 steps: step 10 is in the middle of epoch 3
        _run(_toy(ToyConfig(), tmp_path / "b", stop_at_step=10), tmp_path / "b")
    saved = torch.load(tmp_path / "b" / LAST / STATE_FILE, weights_only=False)
    assert saved["progress"]["epoch"] == 2
    # Another process: another initial weights and RNG positions, and another thread setting.
    random.seed(123)
    np.random.seed(123)
    task = _toy(ToyConfig(threads=3), tmp_path / "b", init_seed=99)
    resumed = _run(task, tmp_path / "b")

    for key, value in straight_task.model.state_dict().items():
        assert torch.equal(task.model.state_dict()[key], value), key
    assert _same_history(resumed, straight) and len(resumed.history) == 5
    assert (resumed.best_epoch, resumed.best_score) == (straight.best_epoch, straight.best_score)
    best = json.loads((tmp_path / "b" / BEST / "best.json").read_text())
    assert best == json.loads((tmp_path / "a" / BEST / "best.json").read_text())


def test_a_finished_run_resumes_to_itself_without_training(tmp_path):
    first = _run(_toy(ToyConfig(), tmp_path), tmp_path)
    again = _run(_toy(ToyConfig(), tmp_path, stop_at_step=1), tmp_path)  # a step would raise
    assert _same_history(again, first)


def test_another_config_is_refused_or_restarted(tmp_path):
    _run(_toy(ToyConfig(), tmp_path), tmp_path, epochs=2)
    with pytest.raises(DeepInterestError, match="different config"):
        _run(_toy(ToyConfig(lr=0.01), tmp_path), tmp_path, epochs=4)
    with pytest.warns(UserWarning, match="training starts over"):
        fresh = _run(_toy(ToyConfig(lr=0.01), tmp_path), tmp_path, epochs=4,
                     restart_mismatched=True)
    assert [r.epoch for r in fresh.history] == [1, 2, 3, 4]
    unsaved = _run(_toy(ToyConfig(lr=0.02), tmp_path), tmp_path, epochs=1, resume=False)
    assert [r.epoch for r in unsaved.history] == [1]


def _scripted(scores, *, steps=None):
    """A task whose validation returns ``scores`` in turn; its step does nothing."""
    it, kept, model = iter(scores), [], nn.Linear(1, 1)
    task = Task(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.5),
                scheduler=None, lengths=LENGTHS, step=steps or (lambda rows, n: 1.0),
                evaluate=lambda: Metrics(N, {"ndcg@10": next(it), "hr@10": 0.0}),
                save_best=lambda epoch, valid: kept.append((epoch, valid["ndcg@10"])),
                config=ToyConfig())
    return task, kept


def test_patience_counts_validations_without_a_new_best():
    task, kept = _scripted([0.1, 0.3, 0.2, 0.3, 0.5])  # 0.3 again is no gain
    prog = _run(task, None, epochs=10, patience=2)
    assert prog.stopped and prog.epoch == 4 and len(prog.history) == 4
    assert kept == [(1, 0.1), (2, 0.3)]
    assert (prog.best_epoch, prog.best_score, prog.best_valid["ndcg@10"]) == (2, 0.3, 0.3)

    task, kept = _scripted([0.5, 0.4, 0.6, 0.1, 0.1])  # checked at epochs 2, 4, ..., 10
    prog = _run(task, None, epochs=20, eval_every=2, patience=2)
    assert prog.stopped and prog.epoch == 10 and prog.best_epoch == 6
    assert kept == [(2, 0.5), (6, 0.6)]


def test_a_larger_patience_continues_a_run_that_stopped_early(tmp_path):
    task, _ = _scripted([0.3, 0.2, 0.4, 0.5])
    prog = _run(task, tmp_path, epochs=4, patience=1)
    assert prog.stopped and prog.epoch == 2
    task, kept = _scripted([0.4, 0.5])  # the validations of epochs 3 and 4
    prog = _run(task, tmp_path, epochs=4, patience=None)
    assert not prog.stopped and [r.epoch for r in prog.history] == [1, 2, 3, 4]
    assert kept == [(3, 0.4), (4, 0.5)] and prog.best_epoch == 4


def test_a_start_validation_competes_for_best_as_epoch_0():
    task, kept = _scripted([0.2, 0.1, 0.4])
    prog = _run(task, None, epochs=3, start={"ndcg@10": 0.3, "hr@10": 0.0})
    assert kept == [(0, 0.3), (3, 0.4)] and prog.best_epoch == 3
    task, kept = _scripted([0.2, 0.1, 0.4])
    prog = _run(task, None, epochs=3, patience=2, start={"ndcg@10": 0.5, "hr@10": 0.0})
    assert kept == [(0, 0.5)] and prog.best_epoch == 0 and prog.stopped and prog.epoch == 2


def test_eval_every_and_the_last_epoch_are_validated():
    task, kept = _scripted([0.1, 0.2, 0.3])
    prog = _run(task, None, epochs=7, eval_every=3)
    assert [r.epoch for r in prog.history if r.valid is not None] == [3, 6, 7]
    assert not prog.stopped and kept == [(3, 0.1), (6, 0.2), (7, 0.3)]
    assert all(r.lr == 0.5 for r in prog.history)  # no scheduler: the optimizer's own


def test_the_epoch_past_the_deadline_is_validated_and_last():
    task, _ = _scripted([0.1, 0.2])
    prog = _run(task, None, epochs=9, eval_every=5, deadline=time.perf_counter() - 1)
    assert [r.epoch for r in prog.history] == [1] and prog.history[0].valid is not None
    assert not prog.stopped  # a deadline is not early stopping


def test_step_scalars_are_averaged_with_the_step_weights():
    def step(rows, n_global):
        extra = {"rows": float(len(rows))}
        if len(rows) < 4:
            extra["short"] = 2.0  # reported by some steps only
        return Step(loss=float(len(rows)), weight=1.0, scalars=extra)

    task, _ = _scripted([0.1, 0.2], steps=step)
    prog = _run(task, None, epochs=2, batch_size=4)  # batches of 4, 4 and 2 each epoch
    for record in prog.history:
        assert record.loss == pytest.approx(10 / 3)
        assert record.scalars == pytest.approx({"rows": 10 / 3, "short": 2.0})
        assert record_dict(record)["scalars"] == record.scalars

    task, _ = _scripted([0.1], steps=lambda rows, n: 1.0 + len(rows))  # a float: rows weigh
    record = _run(task, None, epochs=1, batch_size=4).history[0]
    assert record.loss == pytest.approx((4 * 5 + 4 * 5 + 2 * 3) / 10)
    assert record.scalars == {} and "scalars" not in record_dict(record)
    assert record.samples_per_second > 0


def test_batch_order_depends_on_seed_and_epoch_only():
    one = epoch_batches(LENGTHS, 3, seed=1, epoch=2)
    assert all(torch.equal(a, b) for a, b in zip(one, epoch_batches(LENGTHS, 3, seed=1, epoch=2)))
    plain = epoch_batches(LENGTHS, 3, seed=1, epoch=2, bucket=False)
    for batches in (one, plain):
        assert torch.equal(torch.cat(batches).sort().values, torch.arange(N))
