"""Test-wide settings: never reach a model hub from a test."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


import signal  # noqa: E402
import subprocess  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid``, whatever session it started (Linux ``/proc``)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):  # gone meanwhile, or not a process
            continue
        children.setdefault(parent, []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        kids = children.get(todo.pop(), [])
        found += kids
        todo += kids
    return found


def _kill_group(proc: subprocess.Popen) -> None:
    # torchrun starts each rank in a session of its own: killing torchrun's group alone
    # left a rank running, so every descendant is found first, then all are killed.
    for pid in [proc.pid, *_descendants(proc.pid)]:
        for kill in (os.killpg, os.kill):
            try:
                kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):  # already gone
                pass
    proc.wait()


def run_in_group(cmd, *, timeout: float, **kwargs) -> subprocess.CompletedProcess:
    """``subprocess.run(cmd, capture_output=True, text=True)``, with the child leading a
    process group of its own that is killed whole when the call ends, times out or fails.

    torchrun's ranks are grandchildren of the test: killing torchrun alone left a rank
    alive (and ignoring SIGTERM) long after a timed-out test, so the group gets SIGKILL.
    """
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        _kill_group(proc)  # also any straggler of a run that ended
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def pytest_configure(config):
    """A terminated pytest (a CI timeout sends SIGTERM) unwinds like an interrupted one, so
    :func:`run_in_group` still kills the process groups its tests started."""
    def terminate(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, terminate)


@pytest.fixture(scope="session")
def run_proc():
    """:func:`run_in_group`, for tests that start processes."""
    return run_in_group


@pytest.fixture
def one_thread():
    """Tiny models gain nothing from intra-op threads, and on a busy 2-core machine two
    spinning threads made a small overfit test 10x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# A run small enough for the whole chain in seconds: 120 items, 150 users, a 2-level
# 8-code tokenizer and a one-layer T5 trained for two epochs; [hybrid] off, so eval scores
# the T5 alone (tests/test_hybrid.py runs the chain with it).
TINY_RUN = """
workdir = "{work}"
[data.synthetic]
n_items = 120
n_users = 150
[tokenize]
levels = 2
codebook_size = 8
cache_dir = "{cache}"
[hybrid]
enabled = false
[train]
backbone = "t5"
options = {{ d_model = 32, encoder_layers = 1, decoder_layers = 1, heads = 2, d_kv = 16, d_ff = 64 }}
[train.sft]
epochs = 2
batch_size = 64
warmup_steps = 0
eval_users = 40
threads = 1
"""


@pytest.fixture(scope="session")
def tiny_config():
    """``tiny_config(root)`` writes ``root/tiny.toml`` (workdir ``root/work``) and returns it."""

    def write(root):
        path = root / "tiny.toml"
        path.write_text(TINY_RUN.format(work=root / "work", cache=root / "cache"))
        return path

    return write


@pytest.fixture(scope="session")
def tiny_with(tiny_config):
    """``tiny_with(root, extra, backbone="t5")``: the tiny run config with ``extra`` (TOML)
    appended and ``backbone`` set, loaded; a ``[hybrid]`` table in ``extra`` replaces the
    tiny run's (off)."""
    import deepinterest as di

    def load(root, extra="", backbone="t5"):
        path = tiny_config(root)
        text = path.read_text().replace('backbone = "t5"', f'backbone = "{backbone}"')
        if "[hybrid]" in extra:
            text = text.replace("[hybrid]\nenabled = false\n", "")
        path.write_text(text + extra)
        return di.load_config(path)

    return load


@pytest.fixture(scope="session")
def run_chain():
    """``run_chain(cfg)``: ``di.run`` of ``cfg`` quietly; (cfg, each stage's result)."""
    import deepinterest as di

    def run(cfg):
        stages = []
        di.run(cfg, on_stage=stages.append, progress=False)
        return cfg, stages

    return run
