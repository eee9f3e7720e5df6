"""What every reward shares: parsing a completion into SID codes, dataset columns, the base class.

Every reward in this package is a small callable class with TRL's reward
signature (``GRPOTrainer(reward_funcs=[...])``)::

    reward(prompts, completions, **columns) -> list[float | None]

``columns`` are the dataset's other columns, each a list aligned with
``completions`` (TRL repeats a prompt's row for each of its generations), plus
whatever the trainer adds (TRL passes ``completion_ids`` and
``trainer_state``). A reward reads the columns it needs and ignores every
other one. ``None`` means "not applicable to this row" (TRL then leaves the
row out of that reward's mean). Instances keep only plain data (the
catalogue, lookup tables), so they pickle, and each has a stable ``__name__``
(TRL logs a reward under it).

Columns read by the built-ins:

| column | meaning | used by |
|---|---|---|
| ``target`` | the target item: its catalogue index (int) or its item id (str) | all but ``valid`` |
| ``rank`` | 0-based position of the completion in its beam / group | ``rank`` |
| ``user`` | the user id (str), as in the interests artifact's ``users.jsonl`` | ``interest`` |

Completions: one completion is one generated SID, either a sequence of ints
(the code at each SID position, suffix last, as the T5 backbone generates)
or the causal LM's text, SID tokens spelled as :mod:`..schemas.sids`
spells them (``<a_12><b_7><c_200><d_0>``; whitespace between or around them
is allowed, any other text is not). A conversational completion (a list of
``{"role", "content"}`` messages, TRL's chat format) is read from its last
message's ``content``. :func:`as_codes` does the parsing; a completion it
cannot read (wrong length, a code outside its level's codebook, stray text)
is ``None``, and earns 0 from the rule rewards.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..schemas.sids import SIDCatalog, sid_token_strings
from ..errors import DeepInterestError

Codes = tuple[int, ...]

# Candidate SID tokens are cut out of the text by their angle brackets, then looked up in
# the SID schema's own table of spellings, so the spelling lives in one place.
_TOKEN = re.compile(r"<[^<>\s]+>")


class SIDIndex:
    """A catalogue prepared for rewards: token spellings, every item's SID, SID -> item.

    Built once per reward (the lookups are dicts), so scoring a completion
    costs a regex pass and a few dict lookups.
    """

    def __init__(self, catalog: SIDCatalog):
        self.catalog = catalog
        self.sizes = tuple(int(s) for s in catalog.sizes)
        self.positions = len(self.sizes)
        self.levels = self.positions - 1  # the last position is the collision suffix
        if self.levels < 1:
            raise DeepInterestError(f"a catalogue with {self.positions} SID position(s) has no "
                                    "quantizer level before the suffix; rewards need at least 2")
        spellings = sid_token_strings(catalog)
        coords = [(p, c) for p, size in enumerate(self.sizes) for c in range(size)]
        self.tokens: dict[str, tuple[int, int]] = dict(zip(spellings, coords))
        self.sids: list[Codes] = [tuple(row) for row in catalog.sids.tolist()]
        self.item_of: dict[Codes, int] = {}
        for index, sid in enumerate(self.sids):
            self.item_of.setdefault(sid, index)  # a (non-)unique SID: the first item keeps it
        self.row_of_id = {item_id: i for i, item_id in enumerate(catalog.item_ids)}

    def __len__(self) -> int:
        return len(self.sids)

    def parse(self, completion: Any) -> Codes | None:
        """The completion's codes, or ``None`` when it is not a readable SID."""
        if isinstance(completion, str):
            return self._parse_text(completion)
        if isinstance(completion, dict):
            return self.parse(completion.get("content"))
        if hasattr(completion, "tolist"):  # a tensor or an array
            completion = completion.tolist()
        if isinstance(completion, Sequence) and completion and isinstance(completion[-1], dict):
            return self.parse(completion[-1].get("content"))  # chat messages: the last one
        if not isinstance(completion, Sequence) or len(completion) != self.positions:
            return None
        try:
            codes = tuple(operator.index(c) for c in completion)
        except TypeError:
            return None
        return codes if all(0 <= c < s for c, s in zip(codes, self.sizes)) else None

    def _parse_text(self, text: str) -> Codes | None:
        codes, end = [], 0
        for match in _TOKEN.finditer(text):
            if text[end:match.start()].strip():
                return None  # text that is not a SID token
            coord = self.tokens.get(match.group())
            if coord is None or coord[0] != len(codes):
                return None  # an unknown token, or positions out of order
            codes.append(coord[1])
            end = match.end()
        if text[end:].strip() or len(codes) != self.positions:
            return None
        return tuple(codes)

    def target(self, value: Any, row: int) -> int | None:
        """Catalogue index of a ``target`` cell (int index or str item id); ``None`` stays."""
        if value is None:
            return None
        if isinstance(value, str):
            if value not in self.row_of_id:
                raise DeepInterestError(f"row {row}: target item id {value!r} is not in the "
                                        "catalogue; give the item id or catalogue index of a "
                                        "tokenized item")
            return self.row_of_id[value]
        if hasattr(value, "item"):  # a 0-d tensor or NumPy scalar
            value = value.item()
        try:
            index = operator.index(value)
        except TypeError:
            raise DeepInterestError(f"row {row}: target {value!r} is neither a catalogue index "
                                    "(int) nor an item id (str)") from None
        if not 0 <= index < len(self.sids):
            raise DeepInterestError(f"row {row}: target index {index} is outside the "
                                    f"catalogue (0..{len(self.sids) - 1})")
        return index


# as_codes(completion, catalog) with a plain SIDCatalog reuses the last catalogue's index: a
# loop over completions of one catalogue then builds it once. The strong reference keeps the
# catalogue alive, so its id cannot be reused by another object while cached.
_LAST: tuple[SIDCatalog, SIDIndex] | None = None


def index_of(catalog: SIDCatalog | SIDIndex) -> SIDIndex:
    """The :class:`SIDIndex` of a catalogue (cached for the last catalogue seen)."""
    global _LAST
    if isinstance(catalog, SIDIndex):
        return catalog
    if _LAST is None or _LAST[0] is not catalog:
        _LAST = (catalog, SIDIndex(catalog))
    return _LAST[1]


def as_codes(completion: Any, catalog: SIDCatalog | SIDIndex) -> Codes | None:
    """One completion as a tuple of codes (one per SID position, suffix last), or ``None``.

    ``completion`` is a sequence of ints (codes), a string of SID tokens
    (``"<a_1><b_0><c_3><d_0>"``), or chat messages whose last ``content`` is
    such a string. ``None`` when it cannot be read as a SID of ``catalog``'s
    vocabulary: wrong number of positions, a code out of range, an unknown
    token or any text besides SID tokens and whitespace. The codes need not
    be the SID of a catalogue item (that is what the ``valid`` reward checks).
    """
    return index_of(catalog).parse(completion)


def load_catalog(catalog: SIDCatalog | str | Path) -> SIDCatalog:
    """A catalogue given as itself or as the folder of a ``di tokenize`` artifact."""
    if isinstance(catalog, SIDCatalog):
        return catalog
    if isinstance(catalog, (str, Path)):
        return SIDCatalog.load(catalog)
    raise DeepInterestError(f"catalog must be a SIDCatalog or a sids artifact folder, "
                            f"not {type(catalog).__name__}")


def column(columns: dict[str, Any], name: str, n: int, *, reward: str,
           required: bool = True) -> list[Any] | None:
    """Dataset column ``name`` as a list of ``n`` cells (``None`` when absent and optional)."""
    values = columns.get(name)
    if values is None:
        if required:
            raise DeepInterestError(
                f"reward {reward!r} needs a {name!r} column in the dataset (one value per "
                f"completion); the columns given were: {', '.join(sorted(columns)) or 'none'}")
        return None
    values = list(values)
    if len(values) != n:
        raise DeepInterestError(f"reward {reward!r}: column {name!r} has {len(values)} values "
                                f"for {n} completions; columns must be aligned with completions")
    return values


class SIDReward:
    """Base of the catalogue-backed rewards: the catalogue's index, a name, column helpers.

    Subclasses set ``default_name`` and implement ``__call__`` with TRL's
    signature. ``name`` overrides ``__name__`` (two differently configured
    instances of one reward can then be told apart in the logs).
    """

    default_name = "reward"

    def __init__(self, *, catalog: SIDCatalog | str | Path, name: str | None = None):
        self.index = SIDIndex(load_catalog(catalog))
        self.__name__ = name or self.default_name

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.__name__!r})"

    def codes(self, completions: Sequence[Any]) -> list[Codes | None]:
        return [self.index.parse(c) for c in completions]

    def targets(self, columns: dict[str, Any], n: int, *, required: bool = True
                ) -> list[int | None] | None:
        """The ``target`` column as catalogue indices (``None`` cells stay ``None``)."""
        values = column(columns, "target", n, reward=self.__name__, required=required)
        if values is None:
            return None
        return [self.index.target(v, row) for row, v in enumerate(values)]
