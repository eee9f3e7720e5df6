"""Progress bars in a log file are plain lines, without carriage returns or escape codes."""

import io
import sys

from deepinterest import progress


def test_a_bar_written_to_a_file_is_plain_periodic_lines(monkeypatch):
    log = io.StringIO()
    monkeypatch.setattr(sys, "stderr", log)
    for _ in progress.bar(range(500), desc="work", unit="step"):
        pass
    text = log.getvalue()
    assert "\r" not in text and "\x1b" not in text
    lines = text.splitlines()
    assert 1 <= len(lines) <= 3  # the start, the end, and nothing in between (< 30 s)
    assert lines[-1].startswith("work: 100%") and "500/500" in lines[-1]


def test_a_disabled_bar_writes_nothing(monkeypatch):
    log = io.StringIO()
    monkeypatch.setattr(sys, "stderr", log)
    for _ in progress.bar(range(5), disable=True):
        pass
    assert log.getvalue() == ""


def test_a_callers_shorter_interval_does_not_flood_a_log(monkeypatch):
    log = io.StringIO()
    monkeypatch.setattr(sys, "stderr", log)
    bar = progress.bar(range(3), mininterval=0.0, dynamic_ncols=True)
    assert bar.mininterval == progress.LOG_INTERVAL
    list(bar)
