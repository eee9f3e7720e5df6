"""Progress bars: live on a terminal, plain periodic lines in a log file.

A tqdm bar redraws itself with carriage returns and escape codes, which a
log file keeps as one long line of clutter. When standard error is not a
terminal, :func:`bar` writes a plain line at most every
``LOG_INTERVAL`` seconds (and one at the end) instead.
"""

from __future__ import annotations

import re
import sys
from typing import Any

LOG_INTERVAL = 30.0  # seconds between progress lines in a log
_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class _Lines:
    """A text stream that turns tqdm's redraws into whole lines."""

    def __init__(self, stream: Any):
        self.stream = stream

    def write(self, text: str) -> None:
        line = _ESCAPE.sub("", text).replace("\r", "").strip()
        if line:
            self.stream.write(line + "\n")

    def flush(self) -> None:
        self.stream.flush()


def bar(iterable: Any = None, **options: Any):
    """``tqdm(iterable, **options)``, or its plain-lines form when not on a terminal."""
    from tqdm.auto import tqdm

    stream = sys.stderr
    if options.get("disable") or stream.isatty():
        return tqdm(iterable, **options)
    options.pop("dynamic_ncols", None)  # a log has no width to follow
    options.update(file=_Lines(stream), ascii=True, ncols=100,
                   mininterval=max(options.get("mininterval", 0.0), LOG_INTERVAL))
    return tqdm(iterable, **options)
