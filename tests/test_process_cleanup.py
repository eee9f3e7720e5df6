"""What a test starts does not outlive it, even in a session of its own (torchrun's ranks)."""

import os
import sys
import time

CHILD = """
import subprocess, sys, time
grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"],
                              start_new_session=True)
print(grandchild.pid, flush=True)
time.sleep(300)
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_timed_out_process_and_its_other_session_descendants_are_killed(run_proc):
    import subprocess

    import pytest

    if not os.path.isdir("/proc"):
        pytest.skip("needs /proc (Linux)")
    started = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired) as info:
        run_proc([sys.executable, "-u", "-c", CHILD], timeout=3)
    assert time.monotonic() - started < 60
    grandchild = int(info.value.output.split()[0])  # what the child printed before the timeout
    deadline = time.monotonic() + 10
    while _alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(grandchild)
