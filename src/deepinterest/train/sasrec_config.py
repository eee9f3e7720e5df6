"""The settings of the SASRec baseline (``SASRecConfig``) and of the hybrid that merges its
lists with the generative model's (``[hybrid]`` of a run config, ``HybridConfig``).

They live apart from :mod:`.sasrec` so that reading a config does not import torch.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class SASRecConfig(BaseModel):
    """Model and training settings; defaults are the paper's Beauty settings."""

    model_config = ConfigDict(extra="forbid")

    hidden: int = Field(64, ge=1)
    layers: int = Field(2, ge=1)
    heads: int = Field(1, ge=1)
    dropout: float = Field(0.5, ge=0.0, lt=1.0)
    max_len: int = Field(20, ge=1, description="most recent items the model reads")
    lr: float = Field(1e-3, gt=0.0)
    weight_decay: float = Field(0.0, ge=0.0)
    batch_size: int = Field(256, ge=1)
    eval_batch_size: int = Field(1024, ge=1)
    epochs: int = Field(200, ge=1, description="upper bound; early stopping usually ends sooner")
    patience: int = Field(5, ge=1, description="validation checks without improvement")
    eval_every: int = Field(1, ge=1)
    max_seconds: float | None = Field(None, gt=0, description="stop after the epoch that "
                                      "passes this wall time (a benchmark budget)")
    bucket: bool = Field(True, description="bucket batches by length")
    seed: int = 0
    threads: int | None = Field(None, ge=1, description="torch CPU threads; None = torch default")


class HybridConfig(BaseModel):
    """``[hybrid]``: a SASRec trained on the run's dataset beside the generative model, its
    lists merged with the generative model's (every SID view's) wherever the run ranks:
    ``di eval`` and ``di recommend``. SASRec reads item ids, which the SID views do not;
    the merge goes item by item (:func:`deepinterest.eval.ensemble.fuse`)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    # On by default: on the embedded dataset it adds 15 s to `di run` and lifts validation
    # NDCG@10 from 0.170 to 0.195 (record default-t5-run-hybrid, docs/training.md).
    enabled: bool = Field(True, description="train SASRec in `di run` and merge its lists")
    weight: float = Field(1.0, ge=0.0, description="SASRec's weight in the merge; each SID "
                          "view weighs 1 (rules rrf and probability; learned fits its own)")
    rule: Literal["probability", "rrf", "learned"] = Field(
        "rrf", description="rrf: reciprocal ranks (scores of different models need no common "
        "scale); probability: each list's scores as a distribution over its items; learned: "
        "a small reranker over every list's ranks and scores, fitted on validation by `di "
        "eval` (deepinterest.eval.rerank; validation figures cross-fitted)")
    candidates: int = Field(20, ge=1, description="items SASRec hands over per history")
    sasrec: SASRecConfig = Field(default_factory=SASRecConfig)
