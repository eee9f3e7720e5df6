"""Valid JSON answers by construction: the answer schema as a character automaton.

DeepInterestGR (arXiv 2602.18907) asks for strict JSON, which small local
models break often (SmolLM2 adds keys, drops quotes). :class:`AnswerShape`
is the answer of :mod:`.schema` as a character automaton: keys, quotes and
punctuation are forced, the model chooses only the reasoning, the descriptor
texts (at most 80 characters, two letters or digits at least), the
confidences (``0``, ``1``, ``0.d``, ``0.dd``, ``1.0``), how many descriptors
(at most 8) and, for the judge, one 0/1 label per descriptor shown. It also
knows the shortest way to close the answer, so a reply never runs out of
``max_new_tokens`` mid-JSON. The content is still the model's: a weak model
gives weak but valid answers.

:class:`JSONConstraint` applies it as a Hugging Face logits processor over a
:class:`TokenTable` of the tokenizer's vocabulary; the vLLM miner uses the
same shapes. Both local miners live in :mod:`.transformers_local` and
:mod:`.vllm_local`.
"""

from __future__ import annotations

import re
from typing import Any

from .base import MineRequest
from .schema import MAX_CHARS, MAX_DESCRIPTORS

__all__ = ["END", "AnswerShape", "JSONConstraint", "TokenTable", "shape_for", "token_texts"]

# ---------------------------------------------------------------- the answer, character by character

END = ("E",)
_NUMBER = re.compile(r"|0|1|0\.|0\.\d|0\.\d\d|1\.|1\.0")
_NUMBER_DONE = re.compile(r"0|1|0\.\d\d?|1\.0")
_TEXT = '{"text": "'


class AnswerShape:
    """The strict JSON answer of one request (:mod:`.schema`) as a character automaton.

    A state is a tuple: ``("L", literal, next)`` must spell ``literal``;
    ``("S", field, chars, alnum, index)`` is inside the string ``field``
    (``reasoning`` or descriptor ``index``'s ``text``); ``("C", count)`` chooses
    between another descriptor and closing the list; ``("N", digits, index)``
    is a confidence; ``("B", i)`` is judge label ``i``; ``END`` is done.
    :meth:`feed` returns the next state, or None where the character breaks
    the answer; :meth:`cost` is the length of the shortest completion.
    """

    def __init__(self, task: str, *, labels: int = 0, reasoning_chars: int = 200):
        self.task, self.labels, self.reasoning_chars = task, labels, reasoning_chars

    def start(self) -> tuple:
        return ("L", '{"reasoning": "', ("S", "reasoning", 0, 0, 0))

    def forced(self) -> tuple[str, tuple]:
        """The opening every answer shares, and the state after it."""
        text, state = "", self.start()
        while state[0] == "L" or (state[:2] == ("S", "reasoning") and not self.reasoning_chars):
            piece = state[1] if state[0] == "L" else '"'
            text, state = text + piece, self.walk(state, piece)
        return text, state

    def cap(self, field: str) -> int:
        return self.reasoning_chars if field == "reasoning" else MAX_CHARS

    def walk(self, state: tuple | None, text: str) -> tuple | None:
        for ch in text:
            if state is None:
                return None
            state = self.feed(state, ch)
        return state

    def feed(self, state: tuple, ch: str) -> tuple | None:
        kind = state[0]
        if kind == "L":
            if ch != state[1][0]:
                return None
            return ("L", state[1][1:], state[2]) if len(state[1]) > 1 else state[2]
        if kind == "S":
            return self._string(state, ch)
        if kind == "C":
            return self._choice(state[1], ch)
        if kind == "N":
            return self._number(state, ch)
        if kind == "B":
            return self._label(state[1], ch) if ch in "01" else None
        return None

    def _string(self, state: tuple, ch: str) -> tuple | None:
        _, field, chars, alnum, index = state
        if ch == '"':
            return self.closing(field, alnum, index)
        if ch == "\\" or ch < " " or chars >= self.cap(field):
            return None
        return ("S", field, chars + 1, alnum + ch.isalnum(), index)

    def closing(self, field: str, alnum: int, index: int) -> tuple | None:
        """The state after string ``field`` closes (None: a descriptor too short to close)."""
        if field == "reasoning":
            if self.task == "judge":
                return ("L", ', "labels": [', ("B", 0) if self.labels else ("L", "]}", END))
            return ("L", ', "descriptors": [', ("C", 0))
        # Descriptor.text needs 2 characters; 2 letters or digits keep it non-empty once tidied.
        return ("L", ', "confidence": ', ("N", "", index)) if alnum >= 2 else None

    def _choice(self, count: int, ch: str) -> tuple | None:
        if ch == "]":
            return ("L", "}", END)
        if count >= MAX_DESCRIPTORS:
            return None
        if (ch, count > 0) in (("{", False), (",", True)):
            rest = _TEXT[1:] if ch == "{" else " " + _TEXT
            return ("L", rest, ("S", "text", 0, 0, count))
        return None

    def _number(self, state: tuple, ch: str) -> tuple | None:
        digits, index = state[1], state[2]
        if ch == "}":
            return ("C", index + 1) if _NUMBER_DONE.fullmatch(digits) else None
        return ("N", digits + ch, index) if _NUMBER.fullmatch(digits + ch) else None

    def _label(self, i: int, ch: str) -> tuple:
        return ("L", ", ", ("B", i + 1)) if i + 1 < self.labels else ("L", "]}", END)

    def cost(self, state: tuple) -> int:
        """Characters in the shortest way from ``state`` to a complete answer."""
        kind = state[0]
        if kind == "L":
            return len(state[1]) + self.cost(state[2])
        if kind == "S":
            short = max(0, 2 - state[3]) if state[1] == "text" else 0
            return short + 1 + self.cost(self.closing(state[1], 2, state[4]))
        if kind == "C":
            return 2
        if kind == "N":
            return (0 if _NUMBER_DONE.fullmatch(state[1]) else 1) + 3
        if kind == "B":
            return 3 * (self.labels - state[1])
        return 0


def shape_for(request: MineRequest, reasoning_chars: int) -> AnswerShape:
    return AnswerShape(request.task, labels=len(request.descriptors),
                       reasoning_chars=reasoning_chars)


# ---------------------------------------------------------------- the automaton over a tokenizer


def token_texts(tokenizer: Any, size: int) -> list[str]:
    """Each token id's text as it reads inside a longer text ("" past the tokenizer).

    Decoded after an anchor token and cut after it: SentencePiece tokenizers
    drop a token's leading space when it is decoded alone.
    """
    n = min(size, len(tokenizer))
    anchor = tokenizer.encode("a", add_special_tokens=False)[:1]
    kw = dict(skip_special_tokens=False, clean_up_tokenization_spaces=False)
    base = tokenizer.decode(anchor, **kw)
    texts = tokenizer.batch_decode([anchor + [i] for i in range(n)], **kw)
    texts = [t[len(base):] if t.startswith(base) else tokenizer.decode([i], **kw)
             for i, t in enumerate(texts)]
    return texts + [""] * (size - n)


class TokenTable:
    """Token texts and the masks :class:`JSONConstraint` needs, computed once per tokenizer."""

    def __init__(self, tokenizer: Any, size: int):
        import torch

        special = set(tokenizer.all_special_ids)
        self.texts = token_texts(tokenizer, size)
        usable = [i not in special and t != "" and "\ufffd" not in t and "\\" not in t
                  for i, t in enumerate(self.texts)]
        self.length = torch.tensor([len(t) for t in self.texts])
        self.alnum = torch.tensor([min(2, sum(c.isalnum() for c in t)) for t in self.texts])
        # String content: no quote, no backslash, no control character.
        self.plain = torch.tensor([u and '"' not in t and min(t) >= " "
                                   for u, t in zip(usable, self.texts)])
        self.quoted = [i for i, t in enumerate(self.texts) if usable[i] and '"' in t]
        self.numeric = [i for i, t in enumerate(self.texts)
                        if usable[i] and set(t) <= set("0123456789.,]} ")]
        self._exact: dict[str, list[int]] = {}
        for i, t in enumerate(self.texts):
            if usable[i]:
                self._exact.setdefault(t, []).append(i)

    def prefixes(self, text: str) -> list[int]:
        """Tokens whose text is a prefix of ``text``."""
        return [i for n in range(1, len(text) + 1) for i in self._exact.get(text[:n], ())]


class JSONConstraint:
    """A logits processor that keeps every row inside its :class:`AnswerShape`.

    A token is allowed when the row's answer can still be completed within the
    new tokens left after it; when nothing fits (a budget too small for any
    answer), end of sequence is, and the reply is recorded as a failure.
    """

    def __init__(self, table: TokenTable, shapes: list[AnswerShape], states: list[tuple],
                 *, prompt_length: int, max_new_tokens: int, eos_ids: list[int]):
        self.table, self.shapes, self.states = table, shapes, list(states)
        self.prompt_length, self.max_new_tokens, self.eos = prompt_length, max_new_tokens, eos_ids
        self.done = [False] * len(states)

    def __call__(self, input_ids, scores):
        import torch

        step = input_ids.shape[1] - self.prompt_length
        if step > 0:
            self._feed(input_ids[:, -1].tolist())
        left = self.max_new_tokens - step - 1  # tokens still to come after this one
        allowed = torch.zeros(scores.shape, dtype=torch.bool)
        for row in range(scores.shape[0]):
            allowed[row] = self._allowed(row, left, scores.shape[1])
        return scores.masked_fill(~allowed.to(scores.device), float("-inf"))

    def _feed(self, tokens: list[int]) -> None:
        for row, token in enumerate(tokens):
            if self.done[row]:
                continue
            if token in self.eos:
                self.done[row] = True
            else:
                self.states[row] = self.shapes[row].walk(self.states[row], self.table.texts[token])

    def _allowed(self, row: int, left: int, size: int):
        import torch

        shape, state = self.shapes[row], self.states[row]
        allowed = torch.zeros(size, dtype=torch.bool)
        if state is None or state == END or self.done[row]:
            allowed[self.eos] = True
            return allowed
        if state[0] == "S":
            allowed |= self._content(shape, state, left)
            candidates = self.table.quoted
        elif state[0] == "L":
            candidates = self.table.prefixes(state[1])
        elif state[0] == "C":
            candidates = [i for alt in ("]}", _TEXT, ", " + _TEXT)
                          for i in self.table.prefixes(alt)]
        else:
            candidates = self.table.numeric
        for token in candidates:
            after = shape.walk(state, self.table.texts[token])
            if after is not None and shape.cost(after) <= left:
                allowed[token] = True
        if not allowed.any():
            allowed[self.eos] = True
        return allowed

    def _content(self, shape: AnswerShape, state: tuple, left: int):
        """String-content tokens that fit the field and leave room to close the answer."""
        _, field, chars, alnum, index = state
        closing = 1 + shape.cost(shape.closing(field, 2, index))
        short = (2 - alnum - self.table.alnum).clamp(min=0) if field == "text" else 0
        t = self.table
        return t.plain & (t.length <= shape.cap(field) - chars) & (short + closing <= left)
