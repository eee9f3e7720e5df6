"""Completions to SID codes: ints, tensors, the SID schema's token spelling, chat messages."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deepinterest.schemas.sids import item_sid_strings, sid_token_strings
from deepinterest.errors import DeepInterestError
from deepinterest.rewards import SIDIndex, as_codes


def test_code_sequences_of_every_kind_parse(catalog):
    expected = (0, 0, 1, 0)
    for completion in ([0, 0, 1, 0], (0, 0, 1, 0), torch.tensor([0, 0, 1, 0]),
                       np.array([0, 0, 1, 0]), [np.int64(0), 0, 1, 0]):
        assert as_codes(completion, catalog) == expected


def test_every_item_round_trips_through_the_sid_spelling(catalog):
    texts = item_sid_strings(catalog, sid_token_strings(catalog))
    assert texts[1] == "<a_0><b_0><c_1><d_0>"  # the spelling the causal LM reads and writes
    assert [as_codes(t, catalog) for t in texts] == [tuple(r) for r in catalog.sids.tolist()]


def test_whitespace_around_and_between_tokens_is_allowed(catalog):
    assert as_codes("  <a_1> <b_0>\n<c_0><d_0> ", catalog) == (1, 0, 0, 0)


def test_a_readable_sid_of_no_item_still_parses(catalog):
    assert as_codes("<a_1><b_1><c_1><d_0>", catalog) == (1, 1, 1, 0)


def test_chat_messages_are_read_from_the_last_content(catalog):
    chat = [{"role": "assistant", "content": "<a_0><b_1><c_0><d_0>"}]
    assert as_codes(chat, catalog) == (0, 1, 0, 0)


@pytest.mark.parametrize("completion", [
    "",                                   # nothing
    "<a_0><b_0><c_1>",                    # a position short
    "<a_0><b_0><c_1><d_0><a_0>",          # a position too many
    "<b_0><a_0><c_1><d_0>",               # positions out of order
    "<a_0><b_0><c_7><d_0>",               # code 7 is outside level c's codebook of 2
    "<a_0><b_0><e_1><d_0>",               # no such token
    "item <a_0><b_0><c_1><d_0>",          # stray text
    "<a_0><b_0><c_1><d_0></s>",           # trailing text that is not a SID token
    [0, 0, 1],                            # codes: too short
    [0, 0, 2, 0],                         # codes: out of range
    [0, 0, -1, 0],                        # codes: negative
    [0.0, 0, 1, 0],                       # codes: not ints
    None,
    [],
])
def test_unreadable_completions_are_none(catalog, completion):
    assert as_codes(completion, catalog) is None


def test_targets_are_indices_or_item_ids(catalog):
    index = SIDIndex(catalog)
    assert index.target(3, 0) == 3 and index.target("i4", 0) == 4
    assert index.target(torch.tensor(2), 0) == 2 and index.target(None, 0) is None
    with pytest.raises(DeepInterestError, match="row 5: target index 9 is outside"):
        index.target(9, 5)
    with pytest.raises(DeepInterestError, match="'nope' is not in the catalogue"):
        index.target("nope", 0)


def test_a_catalogue_without_a_level_before_the_suffix_is_refused():
    from deepinterest.backbones.base import SIDCatalog

    with pytest.raises(DeepInterestError, match="no quantizer level"):
        SIDIndex(SIDCatalog.from_codes(torch.tensor([[0], [1]])))
