"""One T5 that learns two SID views of the same catalogue (e.g. plain and interest SIDs).

Two runs trained on different SIDs of the same items make different mistakes,
and merging their beams (:mod:`deepinterest.eval.ensemble`) beats either run
(docs/training.md, "Ensembling runs"); but it costs two trainings. This
backbone gets both views from one:

- **Shared vocabulary.** The first view's token blocks, then the second's
  (a *union* layout: SID positions ``P1 + P2``). An item's encoder input is
  the sum of all its code embeddings, both views, so the history is read
  through both quantizations at the cost of one.
- **One encoder, one decoder, two start tokens.** The first view decodes
  from ``BOS`` as in :class:`~.t5.T5Backbone`; the second from ``EOS``,
  whose row is otherwise unused (SID targets carry no end token). Training
  adds both views' teacher-forced cross-entropies (the second weighted by
  ``second_weight``, 1 by default) over one encoder pass, so
  a step costs one encoder and two decoder passes. With ``second_decoder``
  the second view decodes with a decoder of its own (same shape, same
  embedding table): the views share the encoder and the vocabulary, not the
  decoder's weights.
- **The first view is the protocol's.** ``catalog``, ``step`` and
  ``token_logprobs`` (GRPO's sequence scores)
  speak the first view. :meth:`TwoViewT5.views` gives each view as a backbone of
  its own catalogue (same weights); :func:`~deepinterest.eval.generative.recommend`
  beam-searches each and merges their items with
  :func:`~deepinterest.eval.ensemble.fuse`, so validation, ``di eval`` and
  serving rank the merged list. GRPO tunes the first view.
- **Self-contained checkpoints.** ``save`` writes the second view's codes
  beside the weights, so ``load(folder, first_catalog)`` needs only the run's
  own sids artifact.
"""

from __future__ import annotations

import copy
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import DeepInterestError
from .base import BOS, EOS, NUM_SPECIAL, HistoryBatch, SIDCatalog
from .t5 import T5Backbone, T5State, init_code_rows

KIND = "t5-views"
SECOND_START = EOS  # the second view's decoder start token (see the module docstring)
SECOND_FILE = "second_view.safetensors"
DECODER_FILE = "second_decoder.safetensors"  # with second_decoder


def union_catalog(first: SIDCatalog, second: SIDCatalog) -> SIDCatalog:
    """Both views' codes side by side: positions ``P1 + P2``, the second's blocks after
    the first's (so the first view's token ids are unchanged)."""
    # A checkpoint's second view has no item ids: it was saved in the first view's order.
    same = second.item_ids == first.item_ids if second.item_ids else True
    if not same or len(second.sids) != len(first.sids):
        raise DeepInterestError("the two SID views list different items (or another order); "
                                "tokenize both from the same dataset artifact")
    return SIDCatalog(first.item_ids, torch.cat([first.sids, second.sids], dim=1),
                      tuple(first.sizes) + tuple(second.sizes))


class TwoViewT5(T5Backbone):
    """T5 over two SID views: a shared encoder, one decoder (or one per view with
    ``second_decoder``), a start token per view."""

    kind = KIND

    def __init__(self, *, catalog: SIDCatalog, second: SIDCatalog, second_weight: float = 1.0,
                 second_decoder: bool = False, **options: Any) -> None:
        if not 0.0 < second_weight <= 1.0:
            raise DeepInterestError(f"second_weight must be in (0, 1], got {second_weight}")
        super().__init__(catalog=union_catalog(catalog, second), **options)
        self.union, self.catalog, self.second = self.catalog, catalog, second
        # Checkpoints without these options keep the options they always had.
        if second_weight != 1.0:
            self.options["second_weight"] = second_weight
        self.second_decoder = None
        if second_decoder:
            self.options["second_decoder"] = True
            self.second_decoder = self._own_decoder()

    def _own_decoder(self) -> nn.Module:
        """A decoder for the second view alone: the first's shape and initial weights, the
        shared embedding table (so both views still write into one vocabulary)."""
        shared = self.model.decoder.embed_tokens  # kept, not copied
        return copy.deepcopy(self.model.decoder, memo={id(shared): shared})

    def decoder_host(self, start: int) -> Any:
        """The second view's own decoder (``second_decoder``) for its start token."""
        if start == SECOND_START and self.second_decoder is not None:
            return SimpleNamespace(decoder=self.second_decoder, config=self.model.config)
        return self.model

    def target_tokens(self, targets: torch.Tensor) -> torch.Tensor:
        """The first view's SID tokens (what ``teacher_logits``/``token_logprobs`` score)."""
        return self.item_codes[targets][..., : self.catalog.positions]

    def loss(self, batch: HistoryBatch, targets: torch.Tensor) -> torch.Tensor:
        """The two views' cross-entropies, the second weighted by ``second_weight`` (w):
        ``(CE1 + w * CE2) / (1 + w)``, one encoder pass for both (w = 1: their mean)."""
        state = self.encode(batch)
        codes = self.item_codes[targets]
        split = self.catalog.positions
        first, second = codes[:, :split], codes[:, split:]
        if first.shape == second.shape and self.second_decoder is None:
            # one decoder call over both views' rows: half the small kernels
            rows = T5State(state.hidden.repeat(2, 1, 1), state.mask.repeat(2, 1), cross=None)
            starts = torch.cat([torch.full_like(first[:, :1], BOS),
                                torch.full_like(second[:, :1], SECOND_START)])
            losses = self._cross_entropy(rows, starts, torch.cat([first, second])).mean(1)
            return self._weighted(losses[: len(first)].mean(), losses[len(first):].mean())
        return self._weighted(
            self._cross_entropy(state, torch.full_like(first[:, :1], BOS), first).mean(),
            self._cross_entropy(state, torch.full_like(second[:, :1], SECOND_START), second,
                                own_decoder=self.second_decoder is not None).mean())

    def _weighted(self, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        weight = self.options.get("second_weight", 1.0)
        return (first + weight * second) / (1.0 + weight)

    def _cross_entropy(self, state: T5State, starts: torch.Tensor, labels: torch.Tensor,
                       own_decoder: bool = False) -> torch.Tensor:
        """Per-token cross-entropy [rows, P] of teacher-forced ``labels`` (decoded by the
        second view's own decoder with ``own_decoder``)."""
        decoder_input = torch.cat([starts, labels[:, :-1]], dim=1)
        if own_decoder:
            hidden = self.second_decoder(input_ids=decoder_input,
                                         encoder_hidden_states=state.hidden,
                                         encoder_attention_mask=state.mask,
                                         use_cache=False).last_hidden_state
            logits = self.vocab_logits(hidden)
        else:
            logits = self._logits(state, decoder_input)
        # flattened rows: cross_entropy over a transposed [rows, vocab, P] view is several
        # times slower on the CPU (a third of a Beauty step)
        losses = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1),
                                 reduction="none",
                                 label_smoothing=self.options["label_smoothing"])
        return losses.view(labels.shape)

    def step(self, state: T5State, prefix: torch.Tensor) -> torch.Tensor:
        """The first view's next-token log-probabilities (its ids lead the vocabulary)."""
        return self.next_logprobs(state, prefix, BOS)[:, : self.catalog.vocab_size]

    @torch.no_grad()
    def init_code_embeddings(self, codebooks: list[torch.Tensor],
                             second: list[torch.Tensor] | None = None) -> None:
        """Each view's rows from its own quantizer's codewords (the second's left at
        T5's init when ``second`` is None)."""
        weight = self.model.shared.weight
        init_code_rows(weight, self.catalog.sizes, self.catalog.offsets.tolist(), codebooks)
        if second is not None:
            offsets = self.union.offsets[self.catalog.positions:].tolist()
            init_code_rows(weight, self.second.sizes, offsets, second)

    def views(self) -> tuple[View, View]:
        """Both views as backbones of their own catalogues; ``recommend`` (and so
        validation, ``di eval`` and serving) merges their beams with ``fuse``."""
        return View(self, 0), View(self, 1)

    # -- persistence -----------------------------------------------------------

    def save(self, folder: str | Path) -> None:
        from safetensors.torch import save_file

        super().save(folder)
        save_file({"sids": self.second.sids.contiguous()}, str(Path(folder) / SECOND_FILE))
        if self.second_decoder is not None:
            save_file(self._second_decoder_weights(), str(Path(folder) / DECODER_FILE))

    def _second_decoder_weights(self) -> dict[str, torch.Tensor]:
        """The second decoder's own weights (the embedding table is saved with the T5)."""
        return {name: value.detach().contiguous()
                for name, value in self.second_decoder.state_dict().items()
                if not name.startswith("embed_tokens.")}

    @classmethod
    def load(cls, folder: str | Path, catalog: SIDCatalog) -> TwoViewT5:
        from safetensors.torch import load_file

        backbone = super().load(folder, catalog)
        if backbone.second_decoder is not None:
            # the loaded T5 replaced the one it was built with: re-tie the embedding table
            backbone.second_decoder.embed_tokens = backbone.model.decoder.embed_tokens
            path = Path(folder) / DECODER_FILE
            if not path.is_file():
                raise DeepInterestError(f"{folder}: second_decoder is set and {DECODER_FILE} "
                                        "is missing")
            weights = load_file(str(path))
            missing, unexpected = backbone.second_decoder.load_state_dict(weights, strict=False)
            if unexpected or any(not name.startswith("embed_tokens.") for name in missing):
                raise DeepInterestError(f"{path}: not this model's second decoder")
        return backbone

    def _saved_info(self) -> dict[str, Any]:
        return {"second_sizes": list(self.second.sizes)}

    @classmethod
    def _saved_inputs(cls, folder: Path, info: dict[str, Any]) -> dict[str, Any]:
        from safetensors.torch import load_file

        path = folder / SECOND_FILE
        if not path.is_file() or "second_sizes" not in info:
            raise DeepInterestError(f"{folder}: a two-view checkpoint without its second "
                                    f"view ({SECOND_FILE} and backbone.json's second_sizes)")
        sids = load_file(str(path))["sids"]
        return super()._saved_inputs(folder, info) | {
            "second": SIDCatalog([], sids, tuple(info["second_sizes"]))}


class View(nn.Module):
    """One SID view of a :class:`TwoViewT5` as a backbone of that view's catalogue (its
    own token layout), for the beam search. Made on demand by :meth:`TwoViewT5.views`."""

    def __init__(self, model: TwoViewT5, index: int) -> None:
        super().__init__()
        self.model = model
        first = model.catalog
        if index == 0:
            self.catalog, self.start_token, self.shift = first, BOS, 0
        else:  # view token t (own layout) is union token t + shift
            self.catalog = SIDCatalog(first.item_ids, model.second.sids, model.second.sizes)
            self.start_token, self.shift = SECOND_START, first.vocab_size - NUM_SPECIAL
        self.train(model.training)  # recommend() restores this mode on the model after

    def start(self, batch: HistoryBatch) -> T5State:
        return self.model.start_from(batch, self.start_token)

    def expand(self, state: T5State, beam: int) -> T5State:
        return self.model.expand(state, beam)

    def reorder(self, state: T5State, parents: torch.Tensor) -> None:
        self.model.reorder(state, parents)

    def step(self, state: T5State, prefix: torch.Tensor) -> torch.Tensor:
        """Log-probabilities [rows, this view's vocabulary]: the special tokens, then this
        view's code blocks, read off the union vocabulary's log-softmax."""
        logp = self.model.next_logprobs(state, prefix + self.shift, self.start_token)
        low = NUM_SPECIAL + self.shift
        return torch.cat([logp[:, :NUM_SPECIAL], logp[:, low: low + sum(self.catalog.sizes)]], 1)
