"""Regenerate docs/results.md from the JSON records in benchmarks/results/.

    python benchmarks/build_results.py
"""

from __future__ import annotations

import argparse
from pathlib import Path

from deepinterest.artifacts import atomic_write_text
from deepinterest.results import load_records, render_page

ROOT = Path(__file__).resolve().parent.parent
PREAMBLE = """Every figure below was measured by the command shown under it, on the machine
named there. Quality figures are test metrics at the best validation
checkpoint (leave-one-out, full ranking; see `docs/data.md`). Speed figures are
ratios against the alternative a user would pick, measured in the same run."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "results.md")
    args = parser.parse_args()
    records = load_records(args.records)
    atomic_write_text(args.out, render_page(records, preamble=PREAMBLE))
    print(f"{args.out}: {len(records)} records")


if __name__ == "__main__":
    main()
