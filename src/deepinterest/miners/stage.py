"""The mine stage: a dataset artifact in, an ``interests`` artifact out (``di mine``).

Every configured miner is asked about every item (the same requests, so the
answer cache serves reruns and changed ensembles); their answers are
ensembled per item, each ensembled descriptor gets a reward label, and each
user's interests are aggregated from the items before their validation
target (:mod:`.users`). The artifact:

| file | content |
|---|---|
| ``items.jsonl`` | per item: ``item``; ``answers`` (each miner's raw reply, answer, error, tokens, cost, latency, prompt version); ``descriptors`` (ensembled: text, confidence, support, sources, label, probability); ``quality`` = sum(c_j l_j) / sum(c_j); ``failures`` (miner and reason) |
| ``users.jsonl`` | per user: ``user``, ``items_used``, ``descriptors`` (text, confidence) |
| ``report.json`` | per miner: items, answered, failed, tokens, dollars, latency median/p95, descriptors per item, agreement, positive-label rate; and the planted-motivation recovery when the dataset has an answer key (:mod:`.report`) |

No item is dropped: an item every miner failed on is still in
``items.jsonl``, with its failures and no descriptors.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from .. import registry
from ..config import EnsembleSpec, LabelerSpec, MineConfig, MinerSpec
from ..artifacts import Stage, StageResult, artifact_fingerprint, check_output, run_stage
from ..data.model import Dataset, Item, load_dataset
from ..errors import DeepInterestError
from ..schemas.interests import ITEMS_FILE, MINE_STAGE, REPORT_FILE, USERS_FILE
from ..secrets import redact
from .base import MineRequest, MineResult, item_evidence
from .ensemble import Ensembler
from .labels import Labeler
from .users import aggregate_user_interests, asked_user_interests

CAPTIONER = "captioner"  # the captioner's name in the report


def item_requests(items: list[Item], captions: dict[str, str] | None = None
                  ) -> list[MineRequest]:
    """One item request per item: its evidence fields (with its image's caption, when one
    was made) and its first image, if any."""
    captions = captions or {}
    return [MineRequest("item", it.id, item_evidence(it.fields, captions.get(it.id)),
                        image=it.images[0] if it.images else None) for it in items]


def caption_items(cfg: MineConfig, items: list[Item]) -> list[MineResult]:
    """The captioner's results for the items that have an image (none without a captioner)."""
    if cfg.captioner is None:
        return []
    requests = [MineRequest("caption", it.id, item_evidence(it.fields), image=it.images[0])
                for it in items if it.images]
    return _build_miner(cfg.captioner, cfg, 0.0).mine(requests) if requests else []


def _takes(factory: Any, name: str, value: Any) -> str | None:
    """The option of ``factory`` that means ``name`` (e.g. ``budget`` or ``budget_usd``) and
    can hold ``value``, if any.

    Read from the backend's ``Options`` model, else its signature's named
    parameters: a ``**options`` catch-all says nothing about what it accepts.
    A flag takes only a bool: the embedding miner's ``cache`` switches its
    embedding cache on and off, it is not the answers' path.
    """
    fields = registry.declared_options(factory)
    if fields is None:
        return None
    key = next((f for f in (name, f"{name}_usd", f"{name}_path") if f in fields), None)
    flag = key is not None and fields[key] is not None and fields[key].annotation is bool
    return None if flag and not isinstance(value, bool) else key


def _build_miner(spec: MinerSpec, cfg: MineConfig, spent: float, progress: bool = False):
    """The miner of ``spec``, with the stage's cache, remaining budget and progress bar where
    it takes them (options the config sets win)."""
    factory = registry.get("miners", spec.backend)
    options = dict(spec.options)
    for name, value in (("cache", None if cfg.cache is None else str(cfg.cache)),
                        ("budget", None if cfg.budget is None else max(cfg.budget - spent, 0.0)),
                        ("progress", progress or None)):
        key = _takes(factory, name, value)
        if value is not None and key and key not in options:
            options[key] = value
    return registry.create("miners", spec.backend, **options)


def ask_miners(cfg: MineConfig, requests: list[MineRequest], progress: bool = False
               ) -> dict[str, list[MineResult]]:
    """Every configured miner's results for ``requests``, by miner label."""
    answers: dict[str, list[MineResult]] = {}
    spent = 0.0
    for spec in cfg.miners:
        results = _build_miner(spec, cfg, spent, progress).mine(requests)
        spent += sum(r.cost_usd for r in results if not r.cached)
        answers[spec.name] = results
    return answers


def _answer_record(result: MineResult, options: dict[str, Any]) -> dict[str, Any]:
    """A result as stored with its item, with the miner's configured options (no secrets:
    keys come from environment variables and are never options)."""
    record = result.record()
    for key in ("key", "task"):
        record.pop(key)
    return {**record, "options": redact(options)}


def _contract(component: Any, protocol: type, what: str, method: str) -> Any:
    """``component`` when it has the contract's method, else an error naming it (a plugin)."""
    if not isinstance(component, protocol):
        raise DeepInterestError(f"{what} ({type(component).__name__}) does not meet the "
                                f"contract: it needs a method {method}")
    return component


def ensemble_items(spec: EnsembleSpec, per_item: list[dict[str, Any]]) -> list[list]:
    """Each item's answers (by miner) ensembled by the configured ensembler."""
    ensembler = _contract(registry.create("ensemblers", spec.kind, **spec.options), Ensembler,
                          f"ensembler {spec.kind!r}", "combine(answers)")
    if hasattr(ensembler, "combine_many"):  # embeds all descriptor texts at once
        return ensembler.combine_many(per_item)
    return [ensembler.combine(answers) for answers in per_item]


def _taught_labels(spec: LabelerSpec, labeler, evidence: list[dict],
                   texts: list[list[str]]) -> list[list]:
    """Labels from a learning labeler fitted on its teacher's labels of a seeded sample.

    The teacher (e.g. an LLM judge) labels ``spec.sample`` items; the learner
    is fitted on them and labels the rest, so a few hundred judge calls label
    a whole catalogue. The sampled items keep the teacher's own labels.
    """
    import random

    teacher = registry.create("labelers", spec.teacher.kind, **spec.teacher.options)
    picked = sorted(random.Random(0).sample(range(len(texts)), min(spec.sample, len(texts))))
    taught = teacher.label([evidence[i] for i in picked], [texts[i] for i in picked])
    labeler.fit([evidence[i] for i in picked], [texts[i] for i in picked], taught)
    labels = labeler.label(evidence, texts)
    for i, item_labels in zip(picked, taught):
        labels[i] = item_labels
    return labels


def label_items(spec: LabelerSpec, items: list[Item], ensembled: list[list],
                captions: dict[str, str]) -> list[list[dict[str, Any]]]:
    """Each ensembled descriptor as a record with its reward label and probability."""
    labeler = _contract(registry.create("labelers", spec.kind, **spec.options), Labeler,
                        f"labeler {spec.kind!r}", "label(evidence_list, descriptors_list)")
    evidence = [item_evidence(it.fields, captions.get(it.id)) for it in items]
    texts = [[d.text for d in descriptors] for descriptors in ensembled]
    if spec.teacher is not None:
        if not hasattr(labeler, "fit"):
            raise DeepInterestError(f"labeler {spec.kind!r} cannot learn from a teacher "
                                    "(it has no fit); drop mine.labeler.teacher")
        labels = _taught_labels(spec, labeler, evidence, texts)
    else:
        labels = labeler.label(evidence, texts)
    return [[{"text": d.text, "confidence": round(d.confidence, 4), "support": d.support,
              "sources": list(d.sources), "label": lab.label,
              "probability": None if lab.probability is None else round(lab.probability, 4),
              "labeler": lab.labeler, **({"label_error": lab.error} if lab.error else {})}
             for d, lab in zip(descriptors, item_labels)]
            for descriptors, item_labels in zip(ensembled, labels)]


def item_rows(items: list[Item], answers: dict[str, list[MineResult]], cfg: MineConfig,
              captions: dict[str, str] | None = None) -> list[dict]:
    """Ensembled, labelled descriptors and the answers behind them, one row per item."""
    from .labels import item_quality

    per_item = [{name: results[n] for name, results in answers.items()}
                for n in range(len(items))]
    options = {spec.name: spec.options for spec in cfg.miners}
    ensembled = ensemble_items(cfg.ensemble, [{name: r.answer for name, r in row.items()
                                               if r.ok} for row in per_item])
    labelled = label_items(cfg.labeler, items, ensembled, captions or {})
    rows = []
    for item, results, descriptors in zip(items, per_item, labelled):
        rows.append({
            "item": item.id,
            "answers": {name: _answer_record(r, options[name]) for name, r in results.items()},
            "descriptors": descriptors,
            "quality": round(item_quality([d["confidence"] for d in descriptors],
                                          [d["label"] for d in descriptors]), 4),
            "failures": [{"miner": name, "error": r.error} for name, r in results.items()
                         if not r.ok],
        })
    return rows


def _user_rows(dataset: Dataset, rows: list[dict], cfg: MineConfig) -> list[dict[str, Any]]:
    if cfg.users == "miner":
        spec = next(m for m in cfg.miners if m.name == (cfg.user_miner or cfg.miners[0].name))
        return asked_user_interests(dataset, _build_miner(spec, cfg, 0.0))
    return aggregate_user_interests(dataset, {r["item"]: r for r in rows}, top_k=cfg.user_top_k)


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def mine_stage(cfg: MineConfig, dataset_dir: str | Path, out: str | Path, *, force: bool = False,
               progress: bool = True) -> StageResult:
    """Write the ``interests`` artifact of the dataset artifact in ``dataset_dir``."""
    dataset_dir = Path(dataset_dir)
    if not cfg.miners:
        raise DeepInterestError("no miners configured: add one to [[mine.miners]] or use "
                                "--backend (e.g. --backend embedding)")
    out = check_output(out, MINE_STAGE, force=force)
    # The failure threshold decides whether an artifact is written, not what it holds.
    config = cfg.model_dump(mode="json", exclude={"cache", "max_failed_share"})
    if cfg.collaborative is None:  # artifacts made before the option keep their fingerprint
        del config["collaborative"]
    inputs = {"dataset": artifact_fingerprint(dataset_dir)}

    def build(folder: Path) -> dict[str, Any]:
        dataset: Dataset = load_dataset(dataset_dir)
        items = selected_items(dataset, cfg)
        captioned = caption_items(cfg, items)
        captions = {r.key: r.answer.caption for r in captioned if r.ok}
        answers = ask_miners(cfg, item_requests(items, captions), progress)
        rows = item_rows(items, answers, cfg, captions)
        check_failures(rows, cfg.max_failed_share)
        for row in rows:
            row["caption"] = captions.get(row["item"])
        if captioned:
            answers = {**answers, CAPTIONER: captioned}
        # A shard holds part of the catalogue: users wait for the merge.
        users = cfg.shard is None and cfg.users != "none"
        return write_artifact(folder, dataset, rows, answers, cfg, users=users,
                              complete=cfg.shard is None)

    return run_stage(Stage(MINE_STAGE, out, config, inputs, force, retry=_has_failures), build)


def _has_failures(manifest: dict[str, Any]) -> bool:
    return manifest.get("counts", {}).get("failed_items", 0) > 0


def failed(row: dict[str, Any]) -> bool:
    """An item that got no descriptors because every miner failed on it."""
    return not row["descriptors"] and bool(row["failures"])


def check_failures(rows: list[dict[str, Any]], max_share: float) -> None:
    """Refuse to write an artifact in which more than ``max_share`` of the items failed.

    Answers that came back are in the answer cache, so a rerun asks only the
    failed items again; the previous artifact, if any, stays as it was.
    """
    bad = [row for row in rows if failed(row)]
    if not rows or len(bad) <= max_share * len(rows):
        return
    reasons = Counter(f["error"].split("\n")[0][:120] for row in bad for f in row["failures"])
    top = "; ".join(f"{n} x {reason}" for reason, n in reasons.most_common(3))
    raise DeepInterestError(
        f"mining failed for {len(bad)} of {len(rows)} items ({len(bad) / len(rows):.0%}, "
        f"more than mine.max_failed_share = {max_share:.0%}); most common reasons: {top}. "
        "Nothing was written; answers that came back are cached, so a rerun asks only "
        "the failed items again")


def selected_items(dataset: Dataset, cfg: MineConfig) -> list[Item]:
    """The items a run mines: the first ``limit``, then every N-th from I for shard I/N."""
    items = dataset.items[:cfg.limit] if cfg.limit else list(dataset.items)
    if cfg.shard_of is not None:
        index, count = cfg.shard_of
        items = items[index::count]
    return items


def write_artifact(folder: Path, dataset: Dataset, rows: list[dict], answers, cfg: MineConfig, *,
                   users: bool, complete: bool) -> dict[str, Any]:
    """``items.jsonl``, ``users.jsonl`` and ``report.json``; the manifest's counts.

    ``complete``: the rows are the whole run's, so ``mine.collaborative`` (if set)
    completes them here (a shard's neighbours may be in another shard).
    """
    from .report import build_report

    extra = {}
    if complete and cfg.collaborative is not None:
        from .collaborative import complete_rows

        rows, extra["collaborative"] = complete_rows(rows, dataset, cfg.collaborative)
    _write_jsonl(folder / ITEMS_FILE, rows)
    user_rows = _user_rows(dataset, rows, cfg) if users else []
    _write_jsonl(folder / USERS_FILE, user_rows)
    report = build_report(dataset, rows, answers)
    (folder / REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    with_interests = sum(1 for u in user_rows if u.get("descriptors"))
    # Users whose history holds no mined item (a --limit run) have no interests: say so.
    return {"items": len(rows), "users": with_interests,
            "users_without_interests": len(user_rows) - with_interests,
            "failed_items": sum(1 for r in rows if failed(r)),
            "dollars": round(sum(m["dollars"] for m in report["miners"].values()), 4),
            **extra}
