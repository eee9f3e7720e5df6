"""Interest miners: ask models why someone buys an item, and keep the answers.

The contract is :class:`~.base.Miner` (requests in, results out); backends
are registered under the ``deepinterest.miners`` entry points; answers are
validated against :mod:`.schema`; prompts are versioned package data
(:mod:`.prompts`). The ``mine`` stage turns a dataset into an ``interests``
artifact that tokenization and the rewards read (docs/pipeline.md).
"""

from .base import EVIDENCE_FIELDS, MineRequest, MineResult, Miner, item_evidence
from .schema import AnswerError, Descriptor, Interests, Verdicts, parse_answer

__all__ = ["EVIDENCE_FIELDS", "AnswerError", "Descriptor", "Interests", "MineRequest",
           "MineResult", "Miner", "Verdicts", "item_evidence", "parse_answer"]
