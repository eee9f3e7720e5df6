"""Constrained beam search vs Hugging Face ``generate``: speed and agreement.

    python benchmarks/bench_decoding.py                       # random 12,101-item catalogue
    python benchmarks/bench_decoding.py --sids ARTIFACT_DIR   # the SIDs of a `di tokenize` run

One randomly initialised T5 (TIGER-sized defaults), one catalogue, one set of
random 20-item histories; beam 20, top 10 (the evaluation protocol of
docs/data.md, as in the DeepInterestGR paper, arXiv 2602.18907). Times, on the
same model and inputs, alternating batch by batch:

  (a) ``constrained_beam_search`` driving a decode-protocol adapter of the T5;
  (a') the same with a plain adapter (encoder output repeated per beam);
  (b) ``model.generate`` with ``prefix_allowed_tokens_fn`` (the usual baseline);
  (c) ``model.generate`` with ``SIDTrieLogitsProcessor`` (``hf_constraints.py``);
  (d) ``constrained_beam_search`` over the shipped :class:`T5Backbone` (one
      encoder position per item, a per-beam self-attention cache that reads
      one new token per step, one copy of the encoder keys per user);
  (e) ``generate`` + ``prefix_allowed_tokens_fn`` on that backbone's T5, fed the
      same ``inputs_embeds``: the comparison a user of the toolkit would make.

It reports users/s, the speed-up of each over (b), and the fraction of users
whose top-10 item lists equal (b)'s. Speeds come from process CPU time (one
intra-op thread), which other processes on a shared machine barely move;
wall-clock figures are recorded too. Writes ``benchmarks/results/<--record>.json``
(``decoding-speed`` unless told otherwise, so trial runs can go elsewhere).

Why (a) and (d) are faster. ``generate`` keeps a KV cache but copies the
encoder output per beam and re-orders the cross-attention cache of every beam
at every step (an ``index_select`` over ``users x beam x history`` keys and
values: its largest cost here), and calls ``prefix_allowed_tokens_fn`` once
per row and step. Our search keeps one copy of the encoder keys and values
per user (a user's beams are folded into one query axis of cross-attention)
and a per-beam self-attention cache of at most ``P`` tokens, which is all that
moves when beams are reordered (:mod:`deepinterest.backbones.t5_decode`).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import torch
from transformers import (
    DynamicCache,
    EncoderDecoderCache,
    LogitsProcessorList,
    T5Config,
    T5ForConditionalGeneration,
)

from deepinterest.backbones.base import BOS, EOS, PAD, HistoryBatch, SIDCatalog
from deepinterest.backbones.decoding import constrained_beam_search
from deepinterest.backbones.t5 import T5Backbone, cross_attention_cache
from deepinterest.backbones.t5_decode import SelfAttentionCache, decode
from deepinterest.backbones.trie import SIDTrie
from records import record_and_print
from deepinterest.tokenizers.collisions import add_suffix

# benchmarks/hf_constraints.py: the script's own folder is first on sys.path
from hf_constraints import SIDTrieLogitsProcessor, make_prefix_allowed_tokens_fn


class DecoderState(NamedTuple):
    hidden: torch.Tensor  # [rows, L, d] encoder output
    mask: torch.Tensor  # [rows, L] encoder padding mask
    cross: DynamicCache  # per decoder layer: cross-attention keys, values [rows, heads, L, d_kv]
    cache: SelfAttentionCache  # per-beam self-attention keys and values (adapter (a) only)


class PlainT5Decoder:
    """Decode protocol over a ``T5ForConditionalGeneration``, the plain way (adapter (a')).

    Everything is repeated per beam, each beam is its own decoder row, and the
    decoder re-reads ``[BOS] + prefix`` every step.
    """

    def __init__(self, net: T5ForConditionalGeneration, catalog: SIDCatalog):
        self.net, self.catalog = net, catalog
        config = net.config
        self.scale = config.d_model**-0.5 if getattr(config, "scale_decoder_outputs", True) else 1.0

    def encoder_inputs(self, batch: HistoryBatch) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = self.catalog.item_tokens(batch.items).flatten(1)
        return tokens, tokens != PAD

    def start(self, batch: HistoryBatch) -> DecoderState:
        ids, mask = self.encoder_inputs(batch)
        hidden = self.net.encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        return DecoderState(hidden, mask, cross_attention_cache(self.net, hidden), SelfAttentionCache())

    def expand(self, state: DecoderState, beam: int) -> DecoderState:
        cross = DynamicCache()
        for layer, kv in enumerate(state.cross.layers):
            cross.update(kv.keys.repeat_interleave(beam, 0), kv.values.repeat_interleave(beam, 0), layer)
        hidden, mask = state.hidden.repeat_interleave(beam, 0), state.mask.repeat_interleave(beam, 0)
        return DecoderState(hidden, mask, cross, state.cache)

    def head(self, last: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(self.net.lm_head(last * self.scale).float(), dim=-1)

    def step(self, state: DecoderState, prefix: torch.Tensor) -> torch.Tensor:
        tokens = torch.cat([torch.full((prefix.shape[0], 1), BOS, dtype=torch.long), prefix], 1)
        # The filled cross-attention cache makes T5 reuse the encoder keys and values.
        out = self.net.decoder(
            input_ids=tokens, encoder_hidden_states=state.hidden, encoder_attention_mask=state.mask,
            cache=EncoderDecoderCache(DynamicCache(), state.cross), use_cache=True,
        ).last_hidden_state
        return self.head(out[:, -1])


class CachedT5Decoder(PlainT5Decoder):
    """Adapter (a): the shipped backbone's decoding (:mod:`deepinterest.backbones.t5_decode`)
    over a ``T5ForConditionalGeneration`` reading all code tokens."""

    def expand(self, state: DecoderState, beam: int) -> DecoderState:
        return state  # one copy per user: decode folds the beams into the query axis

    def step(self, state: DecoderState, prefix: torch.Tensor) -> torch.Tensor:
        tokens = torch.cat([torch.full((prefix.shape[0], 1), BOS, dtype=torch.long), prefix], 1)
        return self.head(decode(self.net, tokens, state.cross, state.mask, state.cache))

    def reorder(self, state: DecoderState, parents: torch.Tensor) -> None:
        state.cache.reorder(parents)


def build_catalog(args: argparse.Namespace) -> SIDCatalog:
    if args.sids:
        return SIDCatalog.load(args.sids)
    g = torch.Generator().manual_seed(args.seed)
    codes = torch.randint(0, 256, (args.items, 3), generator=g)
    unique = add_suffix(codes)  # the tokenizer's suffix rule, so the trie has real SID shapes
    return SIDCatalog.from_codes(unique.sids, (256, 256, 256, unique.suffix_size))


def build_model(args: argparse.Namespace, catalog: SIDCatalog) -> T5ForConditionalGeneration:
    torch.manual_seed(args.seed)
    config = T5Config(
        vocab_size=catalog.vocab_size, d_model=args.d_model, d_kv=args.d_model // args.heads, d_ff=args.d_ff,
        num_layers=args.layers, num_decoder_layers=args.layers, num_heads=args.heads, dropout_rate=0.0,
        decoder_start_token_id=BOS, pad_token_id=PAD, eos_token_id=EOS,
    )
    return T5ForConditionalGeneration(config).eval()


def hf_generate(
    net: T5ForConditionalGeneration, adapter: PlainT5Decoder, batch: HistoryBatch, args: argparse.Namespace,
    **constraint: object,
) -> torch.Tensor:
    """Generated SID tokens [B * topk, P] from ``generate`` under a constraint."""
    ids, mask = adapter.encoder_inputs(batch)
    with torch.inference_mode():
        seq = net.generate(
            input_ids=ids, attention_mask=mask, num_beams=args.beam, num_return_sequences=args.topk,
            max_new_tokens=adapter.catalog.positions, length_penalty=0.0, do_sample=False,
            decoder_start_token_id=BOS, **constraint,
        )
    return seq[:, 1:]


class Timing(NamedTuple):
    outputs: dict[str, torch.Tensor]  # method -> concatenated outputs over the batches
    cpu: dict[str, float]  # method -> process CPU seconds
    wall: dict[str, float]  # method -> wall-clock seconds


def time_interleaved(
    methods: dict[str, Callable[[HistoryBatch], torch.Tensor]], batches: list[HistoryBatch]
) -> Timing:
    """Run every method on every batch, alternating, after one warm-up call each.

    Alternating spreads load from other processes evenly over the methods, and
    CPU time (one intra-op thread) is what a method costs whatever else runs.
    """
    for fn in methods.values():
        fn(batches[0])  # first-call allocations and lazy inits are not decoding speed
    outs: dict[str, list[torch.Tensor]] = {name: [] for name in methods}
    cpu = dict.fromkeys(methods, 0.0)
    wall = dict.fromkeys(methods, 0.0)
    for batch in batches:
        for name, fn in methods.items():
            c0, w0 = time.process_time(), time.perf_counter()
            outs[name].append(fn(batch))
            cpu[name] += time.process_time() - c0
            wall[name] += time.perf_counter() - w0
    return Timing({name: torch.cat(o) for name, o in outs.items()}, cpu, wall)


def tokens_to_items(trie: SIDTrie, catalog: SIDCatalog, tokens: torch.Tensor, users: int) -> torch.Tensor:
    """Item indices [users, topk] of generated SID tokens; fails if any SID is invalid."""
    nodes = trie.walk(catalog.tokens_to_codes(tokens))
    if (nodes < 0).any():
        raise RuntimeError("generate produced an invalid SID: the constraint did not hold")
    return trie.item_of(nodes).view(users, -1)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=12_101, help="random catalogue size (without --sids)")
    parser.add_argument("--sids", help="a `di tokenize` artifact folder holding sids.jsonl")
    parser.add_argument("--users", type=int, default=256)
    parser.add_argument("--history", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=64, help="users per decoding call")
    parser.add_argument("--beam", type=int, default=20)
    parser.add_argument("--topk", type=int, default=10)
    parser.add_argument("--d-model", type=int, default=128)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--d-ff", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dataset", default=None, help="dataset label of the record")
    parser.add_argument("--record", default="decoding-speed", help="record name under benchmarks/results/")
    parser.add_argument("--results-dir", default=None,
                        help="folder of the record (default: $DEEPINTEREST_RESULTS_DIR or benchmarks/results)")
    return parser.parse_args()


# (a), (a'), (b), (c) of the module docstring; (d), (e): the shipped T5Backbone
OURS, PLAIN, HF_FN, HF_PROC = "ours", "ours plain adapter", "hf prefix_fn", "hf processor"
BB_OURS, BB_HF = "T5Backbone ours", "T5Backbone hf prefix_fn"


def build_backbone(args: argparse.Namespace, catalog: SIDCatalog) -> T5Backbone:
    """The toolkit's own T5 (one encoder position per item), same sizes, random weights."""
    torch.manual_seed(args.seed)
    return T5Backbone(catalog=catalog, d_model=args.d_model, encoder_layers=args.layers,
                      decoder_layers=args.layers, heads=args.heads, d_kv=args.d_model // args.heads,
                      d_ff=args.d_ff, dropout=0.0).eval()


def backbone_methods(args, catalog, trie) -> dict[str, Callable[[HistoryBatch], torch.Tensor]]:
    """(d) our search over T5Backbone's own decode protocol; (e) ``generate`` on its T5."""
    backbone, fn = build_backbone(args, catalog), make_prefix_allowed_tokens_fn(trie, catalog)

    def generate(batch: HistoryBatch) -> torch.Tensor:
        embeds, mask = backbone.encoder_inputs(batch)
        with torch.inference_mode():
            seq = backbone.model.generate(
                inputs_embeds=embeds, attention_mask=mask, num_beams=args.beam,
                num_return_sequences=args.topk, max_new_tokens=catalog.positions, length_penalty=0.0,
                do_sample=False, decoder_start_token_id=BOS, prefix_allowed_tokens_fn=fn)
        return tokens_to_items(trie, catalog, seq[:, 1:], batch.size)

    return {BB_OURS: lambda b: constrained_beam_search(backbone, b, trie, beam=args.beam,
                                                       topk=args.topk).items,
            BB_HF: generate}


def methods(args, net, catalog, trie) -> dict[str, Callable[[HistoryBatch], torch.Tensor]]:
    """Each method maps a batch to top-``topk`` item indices [B, topk]."""
    folded, plain = CachedT5Decoder(net, catalog), PlainT5Decoder(net, catalog)
    fn = make_prefix_allowed_tokens_fn(trie, catalog)
    proc = LogitsProcessorList([SIDTrieLogitsProcessor(trie, catalog)])

    def search(adapter: PlainT5Decoder) -> Callable[[HistoryBatch], torch.Tensor]:
        return lambda b: constrained_beam_search(adapter, b, trie, beam=args.beam, topk=args.topk).items

    def generate(**constraint) -> Callable[[HistoryBatch], torch.Tensor]:
        return lambda b: tokens_to_items(trie, catalog, hf_generate(net, folded, b, args, **constraint), b.size)

    return {OURS: search(folded), PLAIN: search(plain), HF_FN: generate(prefix_allowed_tokens_fn=fn),
            HF_PROC: generate(logits_processor=proc)} | backbone_methods(args, catalog, trie)


def figures_of(run: Timing, args, catalog, trie, net) -> dict[str, float | int]:
    figures: dict[str, float | int] = {f"users/s {name}": args.users / sec for name, sec in run.cpu.items()}
    figures |= {f"wall users/s {name}": args.users / sec for name, sec in run.wall.items()}
    figures |= {f"speed-up {name} / {HF_FN}": run.cpu[HF_FN] / run.cpu[name] for name in (OURS, PLAIN, HF_PROC)}
    base = run.outputs[HF_FN]
    for name in (OURS, PLAIN, HF_PROC):
        same = (run.outputs[name] == base).all(1).float().mean().item()
        figures[f"same top-{args.topk} {name} vs {HF_FN}"] = same
    figures[f"speed-up {BB_OURS} / {BB_HF}"] = run.cpu[BB_HF] / run.cpu[BB_OURS]
    figures[f"same top-{args.topk} {BB_OURS} vs {BB_HF}"] = (
        (run.outputs[BB_OURS] == run.outputs[BB_HF]).all(1).float().mean().item())
    return figures | {
        "items": len(catalog.item_ids), "users": args.users, "beam": args.beam, "topk": args.topk,
        "batch size": args.batch_size, "threads": args.threads, "trie MB": trie.nbytes / 2**20,
        "model parameters": sum(p.numel() for p in net.parameters()),
    }


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    catalog = build_catalog(args)
    trie = SIDTrie.from_catalog(catalog)
    net = build_model(args, catalog)
    g = torch.Generator().manual_seed(args.seed + 1)
    items = torch.randint(0, len(catalog.item_ids), (args.users, args.history), generator=g)
    batches = [HistoryBatch(h, torch.arange(len(h))) for h in items.split(args.batch_size)]
    run = time_interleaved(methods(args, net, catalog, trie), batches)
    figures = figures_of(run, args, catalog, trie, net)
    dataset = args.dataset or (Path(args.sids).name if args.sids else f"random-{len(catalog.item_ids)}-items")
    record_and_print(
        name=args.record, dataset=dataset, method="constrained beam search vs HF generate",
        figures=figures, seconds=time.perf_counter() - start, directory=args.results_dir,
        notes="users/s and speed-ups from process CPU time with one thread; 'wall' figures from the wall clock "
        "of a shared machine. Random-weight T5. HF generate uses its KV cache; adapters (a) and (a') re-read "
        "the <= P-token prefix each step; T5Backbone (d) keeps a per-beam self-attention cache.",
    )


if __name__ == "__main__":
    main()
