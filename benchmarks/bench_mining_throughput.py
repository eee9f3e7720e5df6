"""Sustained request rate of a remote API miner under a requests-per-minute limit.

    python benchmarks/bench_mining_throughput.py --items 300 --rpm 600 --latency 0.3

Mining a catalogue through a paid API (DeepInterestGR, arXiv 2602.18907) is
bounded by the provider's rate limit, so the engine should run close to it
without crossing it (docs/miners-api.md). This mines ``--items`` synthetic
items with the real SDK against the local stand-in server of
tests/miners/fake_llm_server.py (127.0.0.1, answers after ``--latency``
seconds), with ``rpm`` set, and reports the rate the server saw beyond the
first second's burst, as a share of the limit (target: at least 90%). The
answer cache is a temporary file, so every item is sent.
Writes benchmarks/results/mining-throughput-<backend>-<rpm>rpm.json.
"""

from __future__ import annotations

import argparse
import runpy
import tempfile
import time
from pathlib import Path

from deepinterest import registry
from deepinterest.miners import MineRequest
from records import record_and_print

SERVER = Path(__file__).resolve().parents[1] / "tests" / "miners" / "fake_llm_server.py"


def _requests(n: int) -> list[MineRequest]:
    return [MineRequest("item", f"item-{i:04d}", {"title": f"Item {i:04d}",
                                                  "categories": "Beauty > Skin Care"})
            for i in range(n)]


def _rates(arrivals: list[float], burst: int, rpm: float) -> dict[str, float]:
    """The rate the server saw beyond the opening burst (which the limit allows at once),
    and the span of all arrivals."""
    times = sorted(arrivals)
    sustained = 60 * (len(times) - burst) / (times[-1] - times[0])
    return {"sustained rpm": sustained, "sustained share of limit": sustained / rpm,
            "first to last request s": times[-1] - times[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=["openai", "anthropic"], default="openai")
    parser.add_argument("--items", type=int, default=300)
    parser.add_argument("--rpm", type=float, default=600.0)
    parser.add_argument("--latency", type=float, default=0.3, help="server seconds per answer")
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    server_class = runpy.run_path(str(SERVER))["FakeLLMServer"]
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp, server_class(
            latency=args.latency, lifetime=args.items * 60 / args.rpm + 120) as server:
        url = server.openai_url if args.backend == "openai" else server.anthropic_url
        miner = registry.create("miners", args.backend, model="fake", base_url=url,
                                rpm=args.rpm, concurrency=args.concurrency, progress=False,
                                cache=f"{tmp}/mining.sqlite", prices={"input": 0, "output": 0})
        results = miner.mine(_requests(args.items))
        arrivals = [s.at for s in server.seen]
    seconds = time.perf_counter() - start
    burst = int(miner.throttle.requests.burst)
    figures: dict[str, float | int] = {
        "items": args.items, "rpm limit": args.rpm, "answered": sum(r.ok for r in results),
        "failed": sum(not r.ok for r in results), "requests sent": len(arrivals),
        **_rates(arrivals, burst, args.rpm), "burst": burst,
        "tokens": sum(r.tokens_in + r.tokens_out for r in results)}
    record_and_print(
        name=f"mining-throughput-{args.backend}-{args.rpm:g}rpm", dataset="synthetic items",
        method=f"{args.backend} miner against the local stand-in server, rpm={args.rpm:g}",
        figures=figures, seconds=seconds,
        notes=f"server latency {args.latency:g} s, concurrency {args.concurrency}; rates from "
              "server arrival times; the limit allows the burst plus (rpm - burst) a minute")


if __name__ == "__main__":
    main()
