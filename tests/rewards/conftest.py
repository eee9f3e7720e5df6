"""A five-item catalogue with 3 quantizer levels and a collision suffix, shared by the tests.

    item  SID (levels | suffix)
    0     0 0 0 | 0
    1     0 0 1 | 0
    2     0 1 0 | 0
    3     1 0 0 | 0
    4     0 0 0 | 1     (collides with item 0 on every level)

Every position has 2 codes, so (1, 1, 1, 0) is a readable SID of no item.
"""

from __future__ import annotations

import pytest
import torch

from deepinterest.backbones.base import SIDCatalog

CODES = [[0, 0, 0, 0], [0, 0, 1, 0], [0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1]]


@pytest.fixture
def catalog() -> SIDCatalog:
    return SIDCatalog(["i0", "i1", "i2", "i3", "i4"], torch.tensor(CODES), (2, 2, 2, 2))
