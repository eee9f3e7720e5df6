"""What a model's tokens cost, from a price table shipped as package data.

The cost study behind mining (DeepInterestGR, arXiv 2602.18907, mines every
item of a catalogue with large models) needs dollars per answer, and a budget
needs a price before the first request. ``data/prices.toml`` lists models by
id in dollars per 1 million input and output tokens, each with the page it
was read from; a miner's ``prices`` option overrides it. A model with no
price costs 0 and warns once, so a local server (where 0 is right) still
runs, while a budget on such a model is refused (it could not be enforced).
"""

from __future__ import annotations

import functools
import re
import tomllib
import warnings
from importlib import resources

from pydantic import BaseModel, ConfigDict, Field

PER = 1_000_000  # prices are quoted per million tokens

# A dated snapshot id ("claude-haiku-4-5-20251001", "gpt-4o-2024-08-06") or a
# "-latest" alias is priced as its base id.
_SNAPSHOT = re.compile(r"-(\d{8}|\d{4}-\d{2}-\d{2}|latest)$")

_warned: set[str] = set()


class Price(BaseModel):
    """Dollars per 1 million tokens."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input: float = Field(ge=0)
    output: float = Field(ge=0)

    def cost(self, tokens_in: int, tokens_out: int) -> float:
        """Dollars for ``tokens_in`` prompt and ``tokens_out`` reply tokens."""
        return (tokens_in * self.input + tokens_out * self.output) / PER


@functools.lru_cache(maxsize=1)
def price_table() -> dict[str, Price]:
    """The packaged prices by model id (``data/prices.toml``)."""
    text = (resources.files(__package__) / "data" / "prices.toml").read_text(encoding="utf-8")
    return {model: Price(**row) for model, row in tomllib.loads(text).get("models", {}).items()}


def price_for(model: str, override: Price | None = None) -> Price | None:
    """``override``, else the table's price of ``model`` (or of its base id), else None."""
    if override is not None:
        return override
    table = price_table()
    return table.get(model) or table.get(_SNAPSHOT.sub("", model))


def warn_unpriced(model: str) -> None:
    """Say once per model that its cost is recorded as 0."""
    if model in _warned:
        return
    _warned.add(model)
    warnings.warn(f"no price known for model {model!r}: its cost is recorded as $0. Set the "
                  "miner's prices option ({'input': ..., 'output': ...} in $ per 1M tokens) "
                  "for real costs (docs/miners-api.md)", stacklevel=3)
