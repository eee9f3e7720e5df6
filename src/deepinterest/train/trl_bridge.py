"""TRL's ``GRPOTrainer`` on the causal-LM backbone, with our constrained beam search as its sampler.

:func:`make_grpo_trainer` returns a plain ``trl.GRPOTrainer`` (TRL >= 1.16,
the ``trl`` extra) whose completions come from
:func:`~deepinterest.backbones.decoding.constrained_beam_search` through TRL's
experimental ``rollout_func`` hook, so every completion is a valid SID of the
catalogue. docs/trl.md is the user's guide; ``di train --stage rl`` is the
toolkit's own GRPO trainer, which needs no TRL.

What TRL computes (``trl/trainer/grpo_trainer.py``, 1.16), per group of G
completions of one prompt:

- rewards: every reward function is called as ``f(prompts=, completions=,
  completion_ids=, **columns)`` (dataset columns, the rollout's extra keys,
  ``trainer_state``, ``log_extra``, ``log_metric``); ``None`` becomes NaN
  and is left out; the weighted sum (``reward_weights``) is the reward r_i
  (``multi_objective_aggregation="sum_then_normalize"``, the default).
- advantages: A_i = r_i - mean(r) over the group, divided by std + 1e-4
  (``scale_rewards="group"``), by the batch std (``"batch"``) or by
  nothing (``"none"``). A group whose rewards are all equal gets A = 0.
- loss per completion token t: -min(rho A, clip(rho, 1 - epsilon,
  1 + epsilon_high) A) + beta * KL_t, where rho = exp(logp - logp_old) and
  KL_t = exp(ref - logp) - (ref - logp) - 1 (the k3 estimator) against a
  frozen reference; tokens are summed and normalised by ``loss_type``
  (``dapo``: by the tokens of the accumulated batch; ``grpo``: per sequence,
  then averaged; ``dr_grpo``: by batch x ``max_completion_length``; ...).
- log-probs: TRL's own forward over prompt + completion, full-vocabulary
  log-softmax of logits / ``temperature``, the quantity our beam search
  ranks by (at temperature 1).

What we supply:

- the dataset (:func:`prompt_dataset`): ``prompt`` = the backbone's user
  message for the history (:meth:`CausalLMBackbone.prompt_text`), ``target``
  = the target's catalogue index, ``user`` = the user id (``None`` unless
  ``user_ids`` is given: the ``interest`` reward then falls back to the
  target's descriptors).
- the rollout (:class:`BeamRollout`): TRL hands it each process's prompts,
  every prompt already repeated G times in a row. It encodes each distinct
  prompt as the backbone does (chat template or ``Answer:``), runs one
  trie-constrained beam search of width G per prompt and gives the copy at
  group position k the beam of rank k: the group's completions are the G
  best distinct valid SIDs, as in MiniOneRec. It returns the prompt ids, the
  completion ids (the SID's P tokens, then the LM's eos token), a ``rank``
  column (0-based beam rank, read by the ``rank`` reward) and an
  ``env_mask`` that keeps the eos token out of the loss.

Design decisions and limits:

- **Beams are not samples.** A group is the deterministic top G of the
  policy, not G draws from it, so the update is a ranking update over the
  top of the list (MiniOneRec's), not an unbiased estimate of the gradient
  of expected reward. There is no sampling distribution to correct for, so
  the rollout returns ``logprobs=None`` (TRL uses them only to correct for a
  vLLM sampler). With ``num_iterations=1`` and ``steps_per_generation`` left
  at ``gradient_accumulation_steps`` (TRL's defaults) logp_old is logp
  detached: rho = 1, clipping never acts and each beam's tokens get
  -A * grad logp (then ``loss_type``'s normalisation). When a generation is
  reused (``num_iterations > 1``), TRL computes logp_old itself at
  generation time, and the clipped ratio bounds how far the policy moves on
  those fixed beams.
- **Eos is appended but not trained.** TRL counts a completion that does not
  end in eos as truncated (``mask_truncated_completions`` would drop it from
  the loss); our SFT never trains eos after a SID, and beam search never
  chooses it, so its token gets ``env_mask`` 0: it is in the sequence, not
  in the loss, the KL or the completion-length metric.
- **Beam search runs in eval mode** (dropout off, gradient checkpointing
  idle, KV cache on) and each module's mode is restored afterwards; it runs
  on the backbone's own (unwrapped) model, so it works on one device and
  under DDP, not with parameters sharded by FSDP or ZeRO-3.
- **Prompts are looked up, not parsed.** TRL passes the rollout prompt texts
  only; the rollout keeps the history of every prompt text it was given
  (:meth:`BeamRollout.add`), and a prompt it never saw is an error.
- **The reference model** (``beta > 0``): for a PeftModel TRL keeps a
  frozen copy of the adapter (adapter ``"ref"``); otherwise it reloads the
  policy from ``config._name_or_path``, which for a backbone with added SID
  tokens is not the policy (other vocabulary size, no SID rows). So the
  policy as it stands is saved to ``<output_dir>/reference`` and TRL loads
  that.
- **LoRA** works when peft leaves ``lm_head`` alone: TRL's fused LM head
  reads ``lm_head.weight`` directly, past any peft wrapper, so a wrapped
  ``lm_head`` is refused rather than scored with stale rows. The backbone's
  default LoRA wraps it (its trainable SID rows cover ``lm_head``, or, with
  tied embeddings, the input embedding that ``lm_head`` shares).
- **GGUF.** transformers de-quantises a GGUF checkpoint to float weights at
  load time but keeps it marked as quantized, and its ``Trainer`` refuses to
  train (or save) a model so marked. The weights are plain floats, so
  :func:`make_grpo_trainer` removes the marks (the quantizer's own
  ``remove_quantization_config``) before handing the model over.
- **Refused settings**: ``temperature != 1`` (TRL would score at a
  temperature the beams were not ranked at), ``use_vllm`` (the rollout
  replaces generation), ``remove_unused_columns=True`` (the rewards read
  ``target``), more generations than items.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..backbones.base import HistoryBatch, SIDCatalog, pad_histories
from ..backbones.decoding import constrained_beam_search
from ..backbones.trie import SIDTrie
from ..data.splits import Example, Splits
from ..errors import DeepInterestError, require
from ..registry import create

if TYPE_CHECKING:
    import datasets
    import trl

__all__ = ["BeamRollout", "make_grpo_trainer", "prompt_dataset"]

REFERENCE_DIR = "reference"  # under args.output_dir: the policy at the start, for beta > 0
_ROLLOUT_WARNING = "You are using 'rollout_func'"  # TRL's "experimental" notice, documented here


def prompt_dataset(backbone, examples: Sequence[Example], *,
                   user_ids: Sequence[str] | None = None) -> datasets.Dataset:
    """TRL's dataset: one row per example with ``prompt``, ``target`` and ``user`` columns.

    ``user_ids`` (``[u.id for u in dataset.users]``) turns ``Example.user``
    positions into user ids; without it ``user`` is ``None``.
    """
    datasets = require("datasets", "trl", "TRL's GRPOTrainer bridge")
    if not examples:
        raise DeepInterestError("no examples to build a GRPO dataset from")
    return datasets.Dataset.from_dict({
        "prompt": [backbone.prompt_text(list(ex.history)) for ex in examples],
        "target": [int(ex.target) for ex in examples],
        "user": [None if user_ids is None else str(user_ids[ex.user]) for ex in examples],
    })


class BeamRollout:
    """TRL ``rollout_func``: a group's G completions are the G beams of one constrained search.

    Call :meth:`add` with the examples whose prompts the trainer will see
    (:func:`make_grpo_trainer` does). The returned dict is what TRL 1.16
    expects (module docstring).
    """

    def __init__(self, backbone, *, trie: SIDTrie | None = None):
        self.backbone = backbone
        self.trie = trie if trie is not None else SIDTrie.from_catalog(backbone.catalog)
        self.histories: dict[str, tuple[int, ...]] = {}

    def add(self, examples: Sequence[Example]) -> None:
        """Remember the history behind each example's prompt text."""
        for ex in examples:
            self.histories[self.backbone.prompt_text(list(ex.history))] = tuple(ex.history)

    def __call__(self, prompts: list[Any], trainer: Any) -> dict[str, Any]:
        group = trainer.num_generations if trainer.model.training else trainer.num_generations_eval
        # TRL lays out each prompt's G copies in a row across all processes; this slice starts
        # at process_index * len(prompts), so a group may begin on the previous process.
        offset = trainer.accelerator.process_index * len(prompts)
        ranks = [(offset + i) % group for i in range(len(prompts))]
        starts = [i for i, r in enumerate(ranks) if r == 0 or i == 0]
        runs = list(zip(starts, starts[1:] + [len(prompts)]))
        texts = [self._text(prompts, start, end) for start, end in runs]
        beams = self.beams(texts, group)  # [runs, G, P] LM token ids
        encoded = self.backbone.encode_prompts(texts)
        eos = self.backbone.tokenizer.eos_token_id
        tail = [] if eos is None else [eos]
        run_of = [r for r, (start, end) in enumerate(runs) for _ in range(start, end)]
        completion_ids = [beams[run][rank] + tail for run, rank in zip(run_of, ranks)]
        return {
            "prompt_ids": [encoded[run] for run in run_of],
            "completion_ids": completion_ids,
            "logprobs": None,  # beams are not samples: nothing to importance-correct
            "env_mask": [[1] * (len(ids) - len(tail)) + [0] * len(tail) for ids in completion_ids],
            "rank": ranks,
        }

    def _text(self, prompts: list[Any], start: int, end: int) -> str:
        text = prompts[start]
        if not isinstance(text, str):
            raise DeepInterestError(
                f"the beam rollout got a {type(text).__name__} prompt; it needs the plain prompt "
                "texts of prompt_dataset (not chat messages)")
        if any(p != text for p in prompts[start:end]):
            raise DeepInterestError(
                f"prompts {start}..{end - 1} should be one prompt's copies (TRL repeats each "
                "prompt num_generations times in a row); was the sampler replaced?")
        return text

    def beams(self, texts: list[str], beam: int) -> list[list[list[int]]]:
        """LM token ids ``[prompt][rank][position]`` of each prompt's ``beam`` best valid SIDs."""
        missing = [t for t in texts if t not in self.histories]
        if missing:
            raise DeepInterestError(
                f"the beam rollout does not know the prompt {missing[0][-200:]!r}; build the "
                "dataset with prompt_dataset and pass its examples to BeamRollout.add")
        histories = [self.histories[t] for t in texts]
        length = max(1, max(len(h) for h in histories))
        batch = HistoryBatch(pad_histories(histories, length), torch.arange(len(histories)))
        with _eval_mode(self.backbone):
            result = constrained_beam_search(self.backbone, batch.to(self.backbone.device),
                                             self.trie, beam=beam, topk=beam)
        if result.items.shape[1] < beam:
            raise DeepInterestError(f"the catalogue has {result.items.shape[1]} items, fewer "
                                    f"than num_generations={beam}")
        catalog = self.backbone.catalog
        return self.backbone.lm_ids[catalog.item_tokens(result.items)].tolist()


def make_grpo_trainer(backbone, catalog: SIDCatalog, splits: Splits,
                      rewards: Sequence[Callable[..., Any] | str], args: trl.GRPOConfig, *,
                      user_ids: Sequence[str] | None = None, evaluate: bool = False,
                      callbacks: list[Any] | None = None) -> trl.GRPOTrainer:
    """A ``trl.GRPOTrainer`` that trains ``backbone`` on ``splits.train`` with beam-search groups.

    ``rewards``: reward callables (TRL's signature), or registered names of
    rewards that need only the catalogue (``"exact"``, ``"prefix"``,
    ``"rank"``, ``"valid"``). ``evaluate`` adds ``splits.valid`` as TRL's
    eval dataset. Call ``.train()`` on the result; ``backbone`` is trained
    in place (save it with ``backbone.save``).
    """
    trl = require("trl", "trl", "TRL's GRPOTrainer bridge")
    _check(backbone, catalog, splits, args)
    funcs = [_reward(r, catalog) for r in rewards]
    rollout = BeamRollout(backbone, trie=SIDTrie.from_catalog(catalog))
    rollout.add(splits.train)
    train = prompt_dataset(backbone, splits.train, user_ids=user_ids)
    valid = None
    if evaluate:
        rollout.add(splits.valid)
        valid = prompt_dataset(backbone, splits.valid, user_ids=user_ids)
    _drop_gguf_marks(backbone.model)
    with _reference_snapshot(backbone.model, args), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_ROLLOUT_WARNING, category=UserWarning)
        return trl.GRPOTrainer(model=backbone.model, reward_funcs=funcs, args=args,
                               train_dataset=train, eval_dataset=valid,
                               processing_class=backbone.tokenizer, callbacks=callbacks,
                               rollout_func=rollout)


# -- helpers -------------------------------------------------------------------


def _check(backbone, catalog: SIDCatalog, splits: Splits, args: Any) -> None:
    for name in ("prompt_text", "encode_prompts", "tokenizer", "lm_ids", "model"):
        if not hasattr(backbone, name):
            raise DeepInterestError(f"{type(backbone).__name__} has no {name}; the TRL bridge "
                                    "needs a causal-LM backbone (backbones.causal_lm)")
    mine = backbone.catalog
    if mine.sizes != catalog.sizes or not torch.equal(mine.sids, catalog.sids):
        raise DeepInterestError("the backbone was built for another catalogue than the one "
                                "given; pass the sids artifact it was trained on")
    head = backbone.model.get_output_embeddings()
    if type(head).__module__.startswith("peft."):
        raise DeepInterestError(
            f"lm_head is wrapped by peft ({type(head).__name__}, e.g. trainable SID rows): TRL "
            "computes log-probs from lm_head.weight directly, so it would score with the base "
            "rows and never train the wrapped ones. Use full fine-tuning, or a LoRA that leaves "
            "lm_head alone (trainable_token_indices on the input embedding only, in a model "
            "whose lm_head is not tied to it)")
    if not splits.train:
        raise DeepInterestError("no training examples: every user has fewer than 2 items")
    items = len(catalog.item_ids)
    for name in ("num_generations", "num_generations_eval"):
        value = getattr(args, name, None)
        if value is not None and value > items:
            raise DeepInterestError(f"{name}={value} beams, but the catalogue has {items} "
                                    "items; a group needs distinct SIDs")
    if args.temperature != 1.0:
        raise DeepInterestError(f"temperature={args.temperature}: beam search ranks at "
                                "temperature 1, and TRL would score the beams at another")
    if args.use_vllm:
        raise DeepInterestError("use_vllm=True: the bridge generates with its own beam "
                                "search; leave use_vllm off")
    if args.remove_unused_columns:
        raise DeepInterestError("remove_unused_columns=True would drop the 'target' and "
                                "'user' columns the rewards read; set it to False")


def _reward(reward: Callable[..., Any] | str, catalog: SIDCatalog) -> Callable[..., Any]:
    if isinstance(reward, str):
        return create("rewards", reward, catalog=catalog)
    if not callable(reward):
        raise DeepInterestError(f"reward {reward!r} is neither a callable nor a registered "
                                "reward name")
    return reward


def _is_peft(model: Any) -> bool:
    return getattr(model, "peft_config", None) is not None


def _drop_gguf_marks(model: Any) -> None:
    """Unmark a model read from GGUF as quantized: its weights are de-quantised floats."""
    base = model.get_base_model() if _is_peft(model) else model
    quantizer = getattr(base, "hf_quantizer", None)
    method = getattr(getattr(quantizer, "quantization_config", None), "quant_method", None)
    if getattr(method, "value", method) == "gguf":
        quantizer.remove_quantization_config(base)


@contextmanager
def _eval_mode(module: torch.nn.Module) -> Iterator[None]:
    """Eval mode inside, each submodule's own mode restored after."""
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training


@contextmanager
def _reference_snapshot(model: Any, args: Any) -> Iterator[None]:
    """With beta > 0 and no adapter, point TRL's reference loader at a copy of the policy."""
    if args.beta == 0.0 or _is_peft(model):
        yield
        return
    folder = Path(args.output_dir) / REFERENCE_DIR
    with args.main_process_first(desc="reference snapshot"):
        if args.local_process_index == 0:
            model.save_pretrained(folder)
    config = model.config
    original = getattr(config, "_name_or_path", "")
    config._name_or_path = str(folder)
    try:
        yield
    finally:
        config._name_or_path = original

