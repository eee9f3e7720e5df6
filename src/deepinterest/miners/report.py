"""What a mining run cost and how good its answers are (``report.json``, ``di mine report``).

Per miner: items asked, answered, failed (and why), tokens in and out,
dollars, median and p95 latency, descriptors per answered item, agreement
with the other miners (the share of its answered items where at least one
of its descriptors ended in an ensembled descriptor that another miner also
supports), and the positive-label rate of the descriptors it contributed.

Recovery of planted motivations. The embedded default dataset records, for
each item, the motivations its text was generated from (docs/data.md).
They are the answer key: no miner sees them. Here each descriptor is mapped
to its nearest planted motivation phrase by embedding similarity (the
default text encoder), and a miner's recall is the share of an item's
planted motivations that some descriptor of that item maps to, precision the
share of its descriptors that map to one of the item's own motivations
(both averaged over items). Mapping to the nearest of all planted phrases
rather than thresholding a similarity keeps the score free of a tuned
constant; chance level is about one over the number of motivations.
"""

from __future__ import annotations

import statistics
from typing import Any

import numpy as np

from ..data.model import Dataset
from .base import MineResult


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else 0.0


def miner_stats(name: str, results: list[MineResult], rows: list[dict[str, Any]]) -> dict:
    answered = [r for r in results if r.ok]
    latencies = [r.latency_s for r in results if not r.cached and r.latency_s > 0]
    errors: dict[str, int] = {}
    for r in results:
        if not r.ok:
            reason = (r.error or "unknown").split(":")[0][:60]
            errors[reason] = errors.get(reason, 0) + 1
    mine = [d for row in rows for d in row["descriptors"] if name in d.get("sources", [])]
    agreed = sum(1 for row in rows if any(name in d.get("sources", []) and
                                          len(d.get("sources", [])) > 1
                                          for d in row["descriptors"]))
    labelled = [d["label"] for d in mine if d.get("label") is not None]
    return {
        "backend": results[0].backend if results else "", "model": results[0].model if results else "",
        "items": len(results), "answered": len(answered), "failed": len(results) - len(answered),
        "failures": errors, "cached": sum(r.cached for r in results),
        "tokens_in": sum(r.tokens_in for r in results),
        "tokens_out": sum(r.tokens_out for r in results),
        "dollars": round(sum(r.cost_usd for r in results), 6),
        "latency_median_s": round(statistics.median(latencies), 4) if latencies else 0.0,
        "latency_p95_s": round(_percentile(latencies, 95), 4),
        "descriptors_per_item": round(
            sum(len(getattr(r.answer, "descriptors", ())) for r in answered)
            / max(len(answered), 1), 3),
        "agreement": round(agreed / max(len(answered), 1), 4),
        "positive_label_rate": round(sum(labelled) / len(labelled), 4) if labelled else None,
    }


def build_report(dataset: Dataset, rows: list[dict[str, Any]],
                 answers: dict[str, list[MineResult]]) -> dict[str, Any]:
    report: dict[str, Any] = {
        "items": len(rows),
        "items_with_descriptors": sum(1 for r in rows if r["descriptors"]),
        "mean_quality": round(sum(r["quality"] for r in rows) / max(len(rows), 1), 4),
        "miners": {name: miner_stats(name, results, rows) for name, results in answers.items()},
    }
    planted = dataset.attributes.get("planted")
    if planted:
        per_source = {name: {r.key: [d.text for d in r.answer.descriptors] if r.ok else []
                             for r in results}
                      for name, results in answers.items()
                      if results and results[0].task == "item"}
        per_source["ensemble"] = {row["item"]: [d["text"] for d in row["descriptors"]]
                                  for row in rows}
        report["recovery"] = recovery(planted, per_source)
    return report


def recovery(planted: dict[str, Any], per_source: dict[str, dict[str, list[str]]],
             encoder=None) -> dict[str, dict[str, float]]:
    """Recall and precision of planted motivations, per source (module docstring)."""
    from ..encoders import build_encoder

    encoder = encoder or build_encoder()
    phrases = [m["phrase"] for m in planted["motivations"]]
    ids = [m["id"] for m in planted["motivations"]]
    anchors = _unit(encoder.encode(phrases))
    truth = {item: set(info["motivations"]) for item, info in planted["items"].items()}
    texts = sorted({t for source in per_source.values() for ts in source.values() for t in ts})
    nearest = {}
    if texts:
        sims = _unit(encoder.encode(texts)) @ anchors.T
        nearest = {t: ids[int(j)] for t, j in zip(texts, sims.argmax(axis=1))}
    return {name: _scores(source, truth, nearest) | {"chance_recall": round(1 / len(ids), 4)}
            for name, source in per_source.items()}


def _scores(source: dict[str, list[str]], truth: dict[str, set[str]],
            nearest: dict[str, str]) -> dict[str, float]:
    recalls, precisions = [], []
    for item, motivations in truth.items():
        if item not in source or not motivations:
            continue
        mapped = [nearest[t] for t in source[item]]
        recalls.append(len(motivations & set(mapped)) / len(motivations))
        if mapped:
            precisions.append(sum(m in motivations for m in mapped) / len(mapped))
    return {"items": len(recalls),
            "recall": round(sum(recalls) / len(recalls), 4) if recalls else 0.0,
            "precision": round(sum(precisions) / len(precisions), 4) if precisions else 0.0}


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


_COLUMNS = (("items", "items", "{}"), ("answered", "answered", "{}"), ("failed", "failed", "{}"),
            ("tokens_in", "tok in", "{:,}"), ("tokens_out", "tok out", "{:,}"),
            ("dollars", "dollars", "{:.4f}"), ("latency_median_s", "lat p50 s", "{:.3f}"),
            ("latency_p95_s", "lat p95 s", "{:.3f}"), ("descriptors_per_item", "desc/item",
                                                        "{:.2f}"),
            ("agreement", "agree", "{:.3f}"), ("positive_label_rate", "pos rate", "{:.3f}"))


LEGEND = [
    "columns: lat p50 / p95 s = median and 95th-percentile seconds per request; desc/item ="
    " descriptors per answered item;",
    "  agree = share of a miner's answered items where one of its descriptors is also"
    " supported by another miner; pos rate = share of its descriptors labelled positive;",
    "  mean quality = the mean over items of q = sum(confidence x label) / sum(confidence)",
]


def format_report(folder) -> str:
    """The per-miner table of an interests artifact's ``report.json`` (``di mine report``)."""
    import json
    from pathlib import Path

    from ..errors import DeepInterestError

    path = Path(folder) / "report.json"
    if not path.is_file():
        raise DeepInterestError(f"{path}: not found; is {folder} a `di mine` artifact?")
    report = json.loads(path.read_text(encoding="utf-8"))
    header = ["miner", *(title for _, title, _ in _COLUMNS)]
    rows = [[name, *(_cell(stats.get(key), fmt) for key, _, fmt in _COLUMNS)]
            for name, stats in report["miners"].items()]
    lines = _table([header, *rows])
    lines.append(f"items {report['items']}, with descriptors {report['items_with_descriptors']}, "
                 f"mean quality {report['mean_quality']:.3f}")
    lines += LEGEND
    for name, score in report.get("recovery", {}).items():
        lines.append(f"planted-motivation recovery, {name}: recall {score['recall']:.3f}, "
                     f"precision {score['precision']:.3f} over {score['items']} items "
                     f"(chance recall {score['chance_recall']:.3f})")
    return "\n".join(lines)


def _cell(value, fmt: str) -> str:
    return "-" if value is None else fmt.format(value)


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(str(c).rjust(w) if i else str(c).ljust(w)
                      for i, (c, w) in enumerate(zip(r, widths))) for r in rows]
