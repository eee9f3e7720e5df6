"""Versioned prompts (package data) and the rendering of a request into messages.

Each prompt is a TOML file in ``prompts/`` named ``<task>.v<N>.toml`` with its
``task``, ``version``, ``system`` text and a ``user`` template. The version
is recorded with every answer and is part of every cache key, so changing a
prompt means adding a new file (a new version), never editing an old one.
The item is shown as JSON (title, description, categories, brand, price,
caption): fields, not prose, are what a model grounds its answer in.
"""

from __future__ import annotations

import functools
import json
import tomllib
from dataclasses import dataclass
from importlib import resources
from typing import Any

from ..errors import DeepInterestError

DEFAULT_VERSIONS = {"item": "item.v1", "user": "user.v1", "judge": "judge.v1",
                    "caption": "caption.v1"}


@dataclass(frozen=True)
class Prompt:
    task: str
    version: str
    system: str
    user: str

    def render(self, evidence: dict[str, Any], descriptors: list[str] | None = None) -> str:
        """The user message for one request."""
        shown = json.dumps(evidence, ensure_ascii=False, indent=1)
        listed = "\n".join(f"{n}. {d}" for n, d in enumerate(descriptors or [], start=1))
        return self.user.replace("{evidence}", shown).replace("{descriptors}", listed)


@functools.lru_cache(maxsize=None)
def load_prompt(version: str) -> Prompt:
    """The packaged prompt ``version`` (e.g. ``item.v1``)."""
    folder = resources.files(__package__) / "prompts"
    path = folder / f"{version}.toml"
    if not path.is_file():
        known = sorted(p.name.removesuffix(".toml") for p in folder.iterdir()
                       if p.name.endswith(".toml"))
        raise DeepInterestError(f"no prompt version {version!r}; packaged: {', '.join(known)}")
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    return Prompt(data["task"], data["version"], data["system"], data["user"])


def prompt_for(task: str, version: str | None = None) -> Prompt:
    """The prompt of ``task`` at ``version`` (the default version when None)."""
    prompt = load_prompt(version or DEFAULT_VERSIONS[task])
    if prompt.task != task:
        raise DeepInterestError(f"prompt {prompt.version!r} is for task {prompt.task!r}, "
                                f"not {task!r}")
    return prompt
