"""The one-shot GPU suite says so and exits 0 where there is no CUDA GPU."""

from pathlib import Path

import pytest
import torch

SUITE = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_suite.sh"


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is here: the suite would run")
def test_the_gpu_suite_exits_0_with_a_message_without_a_gpu(run_proc):
    done = run_proc(["bash", str(SUITE)], timeout=600)
    assert done.returncode == 0, done.stderr
    assert "no CUDA GPU visible to torch" in done.stdout
