"""The default thread count leaves the cores other jobs keep busy."""

from deepinterest.train import threads


def _sampler(*readings):
    it = iter(readings)
    return lambda: next(it)


def _clock(*values):
    it = iter(values)
    return lambda: next(it)


def test_a_core_busy_elsewhere_is_left_alone(monkeypatch):
    monkeypatch.setattr(threads, "usable_cores", lambda: 2)
    # Over the window 100 of 200 jiffies were busy on a 2-core machine: one core, not ours.
    probe = dict(window=0.01, sample=_sampler((1000.0, 5000.0), (1100.0, 5200.0)),
                 own_time=_clock(3.0, 3.0), cores=2)
    assert threads.busy_elsewhere(**probe) == 1.0
    probe.update(sample=_sampler((1000.0, 5000.0), (1100.0, 5200.0)), own_time=_clock(3.0, 3.0))
    assert threads.default_threads(**probe) == 1


def test_this_process_own_work_does_not_count(monkeypatch):
    monkeypatch.setattr(threads, "usable_cores", lambda: 2)
    probe = dict(window=0.5, sample=_sampler((0.0, 0.0), (100.0, 200.0)),
                 own_time=_clock(1.0, 1.5), cores=2)  # our 0.5 s of CPU in 0.5 s: one core
    assert threads.busy_elsewhere(**probe) == 0.0


def test_an_idle_machine_uses_every_usable_core_and_never_fewer_than_one(monkeypatch):
    monkeypatch.setattr(threads, "usable_cores", lambda: 4)
    idle = dict(window=0.01, sample=_sampler((0.0, 0.0), (0.0, 400.0)),
                own_time=_clock(0.0, 0.0), cores=4)
    assert threads.default_threads(**idle) == 4
    full = dict(window=0.01, sample=_sampler((0.0, 0.0), (400.0, 400.0)),
                own_time=_clock(0.0, 0.0), cores=4)
    assert threads.default_threads(**full) == 1
    unknown = dict(window=0.0, sample=lambda: None)
    assert threads.default_threads(**unknown) == 4
