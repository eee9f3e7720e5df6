"""The set of valid SIDs as a trie compiled to dense per-position tensors.

Constrained decoding asks two questions per beam row and step: which codes may
follow this prefix, and which node does a chosen code lead to. Both become one
gather on a dense table, batched over every row at once, with no Python work
per row (the usual ``prefix_allowed_tokens_fn`` walks a dict per row and step).

Layout. Every SID has the same length ``P`` (levels + suffix). Nodes at depth
``p`` are the distinct prefixes of length ``p``, numbered in lexicographic
order; depth 0 has one node, the root (node 0). ``children[p]`` is an int32
table ``[nodes at depth p, sizes[p]]`` holding the child's node id at depth
``p + 1``, or -1 where no item continues the prefix with that code. A node at
depth ``P`` is a leaf, i.e. one item: ``leaf_item[leaf]`` is its item index.

Memory. The tables are dense, ``sum_p nodes_p * sizes[p] * 4`` bytes. For
Amazon Beauty (12,101 items, 3 x 256 codes + a small suffix) that is at most
``(1 + 256 + 12,101) * 256 * 4`` bytes, about 13 MB, in exchange for a single
gather per step. A catalogue with millions of items and large codebooks would
want a sparse (CSR) layout instead; :attr:`SIDTrie.nbytes` says what a
catalogue costs.

Building is vectorised (issue: trie-constrained decoding): the node id of
every item's prefix at depth ``p + 1`` is ``torch.unique`` of the key
``node_p * sizes[p] + code_p``, which never overflows because ``node_p`` is
below the number of items. Duplicate SIDs are an error, since the decoder
could not tell those items apart.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import DeepInterestError
from .base import SIDCatalog


@dataclass(frozen=True)
class SIDTrie:
    """Valid SIDs as per-position child tables (see the module docstring)."""

    children: tuple[torch.Tensor, ...]  # per position p: int32 [nodes at depth p, sizes[p]]
    leaf_item: torch.Tensor  # int64 [num items]: item index of each leaf (depth-P node)
    sizes: tuple[int, ...]  # codes per position

    @property
    def positions(self) -> int:
        return len(self.sizes)

    @property
    def num_items(self) -> int:
        return self.leaf_item.shape[0]

    @property
    def device(self) -> torch.device:
        return self.leaf_item.device

    @property
    def nbytes(self) -> int:
        """Memory held by the tables, in bytes."""
        tables = sum(t.numel() * t.element_size() for t in self.children)
        return tables + self.leaf_item.numel() * self.leaf_item.element_size()

    @classmethod
    def from_catalog(cls, catalog: SIDCatalog) -> SIDTrie:
        return cls.from_codes(catalog.sids, catalog.sizes)

    @classmethod
    def from_codes(cls, sids: torch.Tensor, sizes: tuple[int, ...]) -> SIDTrie:
        """Compile ``sids`` [N, P] (codes, item i = row i) into child tables."""
        sids = torch.as_tensor(sids, dtype=torch.long).cpu()
        _check_codes(sids, sizes)
        nodes = torch.zeros(sids.shape[0], dtype=torch.long)  # every item starts at the root
        num_nodes, children = 1, []
        for p, size in enumerate(sizes):
            key = nodes * size + sids[:, p]
            uniq, child = torch.unique(key, sorted=True, return_inverse=True)
            table = torch.full((num_nodes, size), -1, dtype=torch.int32)
            # Every item with the same key writes the same child id, so the scatter is well defined.
            table[uniq // size, uniq % size] = torch.arange(len(uniq), dtype=torch.int32)
            children.append(table)
            nodes, num_nodes = child, len(uniq)
        if num_nodes != sids.shape[0]:
            raise DeepInterestError(_duplicate_message(sids, nodes))
        leaf_item = torch.empty(num_nodes, dtype=torch.long)
        leaf_item[nodes] = torch.arange(sids.shape[0])
        return cls(tuple(children), leaf_item, tuple(int(s) for s in sizes))

    def to(self, device: torch.device | str) -> SIDTrie:
        """The trie on ``device`` (itself when it is already there)."""
        if torch.device(device) == self.device:
            return self
        return SIDTrie(tuple(t.to(device) for t in self.children), self.leaf_item.to(device), self.sizes)

    def allowed_mask(self, p: int, nodes: torch.Tensor) -> torch.Tensor:
        """Bool [rows, sizes[p]]: which codes at position ``p`` continue each depth-``p`` node."""
        return self.children[p][nodes] >= 0

    def advance(self, p: int, nodes: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """Depth-``p + 1`` node ids after appending ``codes`` to depth-``p`` ``nodes``; -1 where invalid."""
        return self.children[p][nodes, codes].long()

    def item_of(self, leaf_nodes: torch.Tensor) -> torch.Tensor:
        """Item indices of depth-``P`` nodes."""
        return self.leaf_item[leaf_nodes]

    def walk(self, codes: torch.Tensor) -> torch.Tensor:
        """Node ids [rows] reached by code prefixes [rows, t]; -1 for rows that left the trie."""
        nodes = torch.zeros(codes.shape[0], dtype=torch.long, device=codes.device)
        for p in range(codes.shape[1]):
            ok = nodes >= 0
            inside = (codes[:, p] >= 0) & (codes[:, p] < self.sizes[p])
            nxt = self.advance(p, nodes.clamp(min=0), codes[:, p].clamp(0, self.sizes[p] - 1))
            nodes = torch.where(ok & inside, nxt, torch.full_like(nxt, -1))
        return nodes


def _check_codes(sids: torch.Tensor, sizes: tuple[int, ...]) -> None:
    if sids.ndim != 2 or sids.shape[1] != len(sizes):
        raise DeepInterestError(f"SIDs must be [items, {len(sizes)}] codes, got shape {tuple(sids.shape)}")
    if sids.shape[0] == 0:
        raise DeepInterestError("cannot build a trie over an empty catalogue")
    bad = (sids < 0) | (sids >= torch.tensor(sizes))
    if bad.any():
        item, p = (int(v) for v in bad.nonzero()[0])
        raise DeepInterestError(
            f"item {item}: code {int(sids[item, p])} at position {p} is outside [0, {sizes[p]})"
        )


def _duplicate_message(sids: torch.Tensor, leaves: torch.Tensor) -> str:
    """Name the first pair of items that share a full SID."""
    order = torch.argsort(leaves, stable=True)
    same = (leaves[order][1:] == leaves[order][:-1]).nonzero()[0, 0]
    a, b = int(order[same]), int(order[same + 1])
    return (
        f"items {a} and {b} share the SID {sids[a].tolist()}; SIDs must be unique "
        "(re-run `di tokenize`, which adds a disambiguating suffix code)"
    )
