"""What the causal-LM backbone reads: instructions, prompts, and their padded layout.

The recommendation prompt is a short instruction and the user's history as
SID strings (``<a_12><b_7><c_200><d_0>``, oldest first, optionally each
followed by its title), as in MiniOneRec and LC-Rec. The two alignment tasks
of those papers, title -> SID and SID -> title, have their own one-line
prompts. docs/backbones-causal-lm.md shows the exact text.

Design decisions:

- **Chat template when there is one.** An instruction-tuned tokenizer wraps
  the text as the user turn and the prompt ends after the opened assistant
  turn; a tokenizer without a template gets the plain text and ``Answer:``.
  Either way the answer's first token comes right after the prompt.
- **Titles are cut** (``TITLE_CHARS`` in prompts, ``MAX_TITLE_TOKENS`` for
  SID -> title answers): a long title would crowd out the history.
- **Left padding.** :func:`pack` left-pads prompts so that every row's answer
  starts in the same column: answers then sit in the last columns, and the
  model computes ``lm_head`` (49k-152k columns) only there
  (``logits_to_keep``).
"""

from __future__ import annotations

from typing import Any

import torch

INSTRUCTION = ("Here is a user's purchase history, oldest first, each item written as its "
               "semantic ID. Predict the semantic ID of the next item the user will buy.")
TITLE_TO_SID = 'Which item has the title "{title}"? Answer with its semantic ID.'
SID_TO_TITLE = "What is the title of the item {sid}?"
TITLE_CHARS = 120  # titles are cut in prompts: a long title would crowd out the history
MAX_TITLE_TOKENS = 32  # SID -> title answers are cut too


def clean_title(title: str) -> str:
    """One line, at most ``TITLE_CHARS`` characters."""
    return " ".join(title.split())[:TITLE_CHARS]


def history_prompt(sids: list[str], titles: list[str] | None = None) -> str:
    """The user message for a history given as SID strings (and titles), oldest first."""
    if titles is not None:
        lines = "\n".join(f"{sid} {clean_title(title)}" for sid, title in zip(sids, titles))
    else:
        lines = ", ".join(sids)
    return f"{INSTRUCTION}\nHistory:\n{lines or '(none)'}"


def alignment_prompts(titles: list[str], sids: list[str]) -> list[str]:
    """Title -> SID prompts for ``titles``, then SID -> title prompts for ``sids``."""
    return ([TITLE_TO_SID.format(title=clean_title(t)) for t in titles]
            + [SID_TO_TITLE.format(sid=s) for s in sids])


def encode_prompts(tokenizer: Any, texts: list[str]) -> list[list[int]]:
    """Token ids of user messages, ending where the answer's first token goes."""
    if getattr(tokenizer, "chat_template", None):
        texts = [tokenizer.apply_chat_template([{"role": "user", "content": t}],
                                               tokenize=False, add_generation_prompt=True)
                 for t in texts]
        return tokenizer(texts, add_special_tokens=False)["input_ids"]
    return tokenizer([f"{t}\nAnswer:" for t in texts])["input_ids"]


def pack(prompts: list[list[int]], answers: list[list[int]] | None,
         pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``[n, L + A]`` ids and mask: prompts left-padded to end in one column, answers after."""
    width = max(len(p) for p in prompts)
    extra = max((len(a) for a in answers), default=0) if answers else 0
    ids = torch.full((len(prompts), width + extra), pad, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, prompt in enumerate(prompts):
        ids[row, width - len(prompt):width] = torch.tensor(prompt, dtype=torch.long)
        mask[row, width - len(prompt):width] = 1
        if answers:
            ids[row, width:width + len(answers[row])] = torch.tensor(answers[row])
            mask[row, width:width + len(answers[row])] = 1
    return ids, mask
