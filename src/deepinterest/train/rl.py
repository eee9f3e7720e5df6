"""GRPO: reinforcement learning of an SFT backbone against SID rewards, on the shared loop.

DeepInterestGR (arXiv 2602.18907) refines its SFT model with GRPO, rewarding
a generated SID for hitting the target and for matching the user's deep
interests. :func:`train_rl` does that for any backbone with the decode
protocol and ``token_logprobs`` (T5, causal LM with or without LoRA), as a
:class:`~.loop.Task` of :func:`~.loop.run_epochs`: batches, validation,
best/last checkpoints, early stopping and exact resume are the loop's, and
validation ranks exactly as SFT's does (trie-constrained beam search,
NDCG@10 on the ``eval_users`` subset), so the best RL checkpoint is chosen
on the same footing as the SFT one.

One step, for a batch of training examples (history -> target):

1. **Rollout** (:mod:`.rollout`): G completions per history, every one a
   valid SID; by default the G beams of one constrained beam search
   (MiniOneRec), else G constrained samples at a temperature.
2. **Rewards**: the configured reward terms (registry names) on every
   completion, with the columns ``target``, ``rank``, ``user``.
3. **Advantages** per group (:func:`group_advantages`)::

       A_i = (r_i - mean_group(r)) / (std + epsilon)

   with std the group's (``scale_rewards = "group"``, the paper's epsilon
   1e-6), the batch's (``"batch"``), or no division (``"none"``); std is
   the unbiased one, as TRL and MiniOneRec compute it.
4. **Loss** (:func:`grpo_loss`) on per-token log-probs of the completions by
   teacher forcing, ``r_{i,t} = exp(logp - logp_old)``::

       l_{i,t} = -min(r A_i, clip(r, 1 - eps, 1 + eps) A_i) + beta * KL_{i,t}
       KL_{i,t} = exp(ref - logp) - (ref - logp) - 1          (k3 estimator)

   averaged as TRL's ``loss_type`` says (|o_i| = completion length, N
   completions, L the longest allowed)::

       grpo:     (1/N) sum_i (1/|o_i|) sum_t l_{i,t}
       dapo:     sum_{i,t} l_{i,t} / sum_i |o_i|
       dr_grpo:  sum_{i,t} l_{i,t} / (N * L)

   Every completion here is one full SID of P tokens, so the three give the
   same value (L = P); they differ only where a mask shortens completions.
5. ``num_iterations`` optimizer updates on that one generation, against the
   log-probs it was generated with (``logp_old``). With 1, the default and
   MiniOneRec's setting, the ratio is exactly 1, clipping never acts and the
   gradient is the plain policy gradient ``-A_i grad logp`` (weighted as
   ``loss_type`` averages).

Design decisions:

- **Reference model**: a frozen copy of the backbone as it was passed in
  (the SFT checkpoint), made before any training; ``beta = 0`` makes none
  and skips its forward. A resumed run must therefore be given the same
  starting model (the stage always loads ``sft/best``). Its log-probs (and
  ``logp_old`` when ``num_iterations > 1``) are computed with autograd on,
  then detached: torch picks other kernels when an input requires grad
  (``torch.matmul`` folds batch dimensions only without grad), and that
  last-bit difference between policy and reference, turned into steps of
  size ``lr`` by Adam's normalisation on a batch whose only gradient was the
  KL, moved an unchanged policy away from its reference in a test. Computed
  the policy's way, the KL of an unchanged policy is exactly 0.
- **Dropout off** throughout (the backbone runs in eval mode, gradients still
  flow): rollouts, policy and reference then score with one function, so at
  ``num_iterations = 1`` the ratio is exactly 1 and the KL of an unchanged
  policy exactly 0 (TRL offers the same as ``disable_dropout``).
- **Precision** as SFT: ``bf16`` autocasts the rollout, the policy and the
  reference forwards; log-softmax and the loss run in fp32; validation fp32.
- **What is logged** per epoch (weighted means of the steps' ``Step.scalars``):
  ``reward`` (the total), ``reward/<term>`` for each term (nested terms of
  the paper's composite as ``reward/paper/exact``), ``zero_variance`` (the
  share of groups whose rewards are all equal: their advantages are 0, so
  they give no policy gradient), ``kl`` (mean per-token k3 KL; only when
  ``beta > 0``) and ``clip_fraction`` (share of tokens where clipping acted).
  The loss itself is near 0 by construction (advantages have zero mean per
  group): read the rewards, not the loss.
- **Distributed** as SFT: each rank rolls out and scores its slice of the
  global batch (whole groups, so group statistics are exact; ``"batch"``
  scaling uses the rank's slice), DDP averages the gradients.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from ..backbones.base import HistoryBatch
from ..backbones.trie import SIDTrie
from ..config import EvalConfig, RLConfig
from ..data.splits import Splits
from ..errors import DeepInterestError
from ..eval.metrics import Metrics
from ..rewards.interest_index import InterestIndex
from . import distributed as dd
from .loop import EpochStats, Step, global_batches, run_epochs, train_epoch
from .precision import resolve_precision
from .rollout import as_composite, build_reward, completion_logprobs, rollout, score
from .sft import TrainData
from .trainer import TrainResult, make_optimizer, open_run, result_dict
from .threads import set_threads

RL_FILE = "rl.json"
RESULT_FILE = "rl_result.json"
# May change between a run and its resume (patience: a run it stopped early goes on).
_RESUME_FREE = ("resume", "threads", "enabled", "patience")


# -- the objective -------------------------------------------------------------

def group_advantages(rewards: torch.Tensor, *, scale: str = "group",
                     epsilon: float = 1e-6) -> torch.Tensor:
    """(r - group mean) / (std + epsilon) for rewards [B, G] (module docstring, step 3)."""
    centred = rewards - rewards.mean(dim=1, keepdim=True)
    if scale == "none":
        return centred
    if scale == "group":
        std = rewards.std(dim=1, keepdim=True)
    elif scale == "batch":
        std = rewards.std()
    else:
        raise DeepInterestError(f"scale_rewards {scale!r}: use 'group', 'batch' or 'none'")
    return centred / (std + epsilon)


def zero_variance_share(rewards: torch.Tensor) -> float:
    """Share of groups (rows of [B, G]) whose rewards are all equal: no policy gradient."""
    return float((rewards.amax(dim=1) == rewards.amin(dim=1)).float().mean())


class LossTerms(NamedTuple):
    loss: torch.Tensor  # scalar, differentiable
    kl: float | None  # mean per-token k3 KL over the mask (None without a reference)
    clip_fraction: float  # share of tokens where clipping changed the objective


def grpo_loss(logp: torch.Tensor, advantages: torch.Tensor, *,
              old_logp: torch.Tensor | None = None, ref_logp: torch.Tensor | None = None,
              mask: torch.Tensor | None = None, beta: float = 0.0, clip_epsilon: float = 0.2,
              loss_type: str = "grpo", max_length: int | None = None) -> LossTerms:
    """The clipped surrogate plus ``beta`` x k3 KL, averaged per ``loss_type`` (module docstring).

    ``logp`` [N, T] per-token log-probs (with grad), ``advantages`` [N],
    ``old_logp`` the log-probs at generation (None: ``logp`` detached, ratio
    1), ``ref_logp`` the reference's (None: no KL), ``mask`` [N, T] the
    tokens that count (None: all), ``max_length`` dr_grpo's L (None: T).
    """
    old = logp.detach() if old_logp is None else old_logp
    ratio = torch.exp(logp - old)
    adv = advantages.unsqueeze(-1)
    clipped = ratio.clamp(1.0 - clip_epsilon, 1.0 + clip_epsilon)
    per_token = -torch.min(ratio * adv, clipped * adv)
    mask = torch.ones_like(logp) if mask is None else mask.to(logp.dtype)
    tokens = mask.sum().clamp(min=1.0)
    kl = None
    if ref_logp is not None:
        delta = ref_logp - logp
        per_kl = torch.exp(delta) - delta - 1.0
        per_token = per_token + beta * per_kl
        kl = float((per_kl.detach() * mask).sum() / tokens)
    masked = per_token * mask
    if loss_type == "grpo":
        loss = (masked.sum(-1) / mask.sum(-1).clamp(min=1.0)).mean()
    elif loss_type == "dapo":
        loss = masked.sum() / tokens
    elif loss_type == "dr_grpo":
        loss = masked.sum() / (logp.shape[0] * (max_length or logp.shape[-1]))
    else:
        raise DeepInterestError(f"loss_type {loss_type!r}: use 'grpo', 'dr_grpo' or 'dapo'")
    acted = ((ratio < 1.0 - clip_epsilon) & (adv < 0)) | ((ratio > 1.0 + clip_epsilon) & (adv > 0))
    clip_fraction = float((acted.to(mask.dtype) * mask).sum() / tokens)
    return LossTerms(loss, kl, clip_fraction)


# -- results -------------------------------------------------------------------

@dataclass(frozen=True)
class RLResult(TrainResult):
    """One GRPO run: :class:`~.trainer.TrainResult`'s fields and ``start_valid``, the model
    as given (the SFT checkpoint) on the same validation subset."""

    start_valid: Metrics | None = None


# -- one step ------------------------------------------------------------------

class _LogProbForward(nn.Module):
    """``forward`` = the completions' per-token log-probs, so DDP can wrap it."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, items: torch.Tensor, users: torch.Tensor,
                completions: torch.Tensor) -> torch.Tensor:
        return completion_logprobs(self.backbone, HistoryBatch(items, users), completions)


@dataclass
class _Parts:
    """What a step needs besides its rows."""

    model: nn.Module  # _LogProbForward, DDP-wrapped under a launcher
    backbone: nn.Module
    reference: nn.Module | None
    optimizer: torch.optim.Optimizer
    scheduler: Any
    data: TrainData
    histories: list[tuple[int, ...]]
    user_ids: Sequence[str]
    reward: Any  # a CompositeReward
    catalog: Any
    trie: SIDTrie
    cfg: RLConfig
    info: dd.DistInfo

    def autocast(self):
        bf16 = resolve_precision(self.cfg.precision, self.info.device) == "bf16"
        return torch.autocast(self.info.device.type, dtype=torch.bfloat16, enabled=bf16)


def _train_step(parts: _Parts, rows: torch.Tensor, n_global: int) -> Step:
    """Rollout, rewards, advantages, then ``num_iterations`` updates (module docstring)."""
    cfg, info, data = parts.cfg, parts.info, parts.data
    parts.backbone.eval()  # dropout off: see the module docstring
    width = int(data.lengths[rows].max())
    batch = HistoryBatch(data.items[rows, -width:], data.users[rows]).to(info.device)
    with parts.autocast():
        roll = rollout(parts.backbone, batch, parts.trie, group=cfg.group_size,
                       generation=cfg.generation, temperature=cfg.temperature)
    scored = score(parts.reward, parts.catalog, roll, [parts.histories[r] for r in rows.tolist()],
                   data.targets[rows].tolist(),
                   [parts.user_ids[u] for u in data.users[rows].tolist()])
    rewards = scored.rewards.to(info.device)
    adv = group_advantages(rewards, scale=cfg.scale_rewards,
                           epsilon=cfg.advantage_epsilon).reshape(-1)
    # With autograd on, then detached: see "Reference model" in the module docstring.
    with torch.enable_grad(), parts.autocast():
        ref = (completion_logprobs(parts.reference, batch, roll.items).flatten(0, 1).detach()
               if parts.reference is not None else None)
        old = (completion_logprobs(parts.backbone, batch, roll.items).flatten(0, 1).detach()
               if cfg.num_iterations > 1 else None)  # the backbone itself: no DDP sync needed
    losses, kls, clips = [], [], []
    for _ in range(cfg.num_iterations):
        terms = _update(parts, batch, roll.items, adv, old, ref, len(rows) * info.world / n_global)
        losses.append(float(terms.loss.detach()))
        clips.append(terms.clip_fraction)
        if terms.kl is not None:
            kls.append(terms.kl)
    scalars = {"reward": float(rewards.mean()),
               **{f"reward/{k}": v for k, v in scored.components.items()},
               "zero_variance": zero_variance_share(rewards),
               "clip_fraction": sum(clips) / len(clips)}
    if kls:
        scalars["kl"] = sum(kls) / len(kls)
    return Step(sum(losses) / len(losses), float(len(rows)), scalars)


def _update(parts: _Parts, batch: HistoryBatch, items: torch.Tensor, adv: torch.Tensor,
            old: torch.Tensor | None, ref: torch.Tensor | None, share: float) -> LossTerms:
    """One optimizer update on the rollout; ``share`` makes DDP's average the global mean."""
    cfg = parts.cfg
    with parts.autocast():
        logp = parts.model(batch.items, batch.users, items).flatten(0, 1)
    terms = grpo_loss(logp.float(), adv, old_logp=old, ref_logp=ref, beta=cfg.beta,
                      clip_epsilon=cfg.clip_epsilon, loss_type=cfg.loss_type)
    (terms.loss * share).backward()
    if cfg.grad_clip:
        torch.nn.utils.clip_grad_norm_(parts.backbone.parameters(), cfg.grad_clip)
    parts.optimizer.step()
    parts.scheduler.step()
    parts.optimizer.zero_grad(set_to_none=True)
    return terms


def _run_epoch(parts: _Parts, epoch: int, progress: bool) -> EpochStats:
    """One epoch of :func:`_train_step` through the loop (a seam tests stop a run at)."""
    batches = global_batches(parts.data.lengths, parts.cfg.batch_size, seed=parts.cfg.seed,
                             epoch=epoch, info=parts.info)
    return train_epoch(partial(_train_step, parts), batches, epoch=epoch, info=parts.info,
                       progress=progress)


# -- the trainer -----------------------------------------------------------------

def _reference(backbone: nn.Module, cfg: RLConfig) -> nn.Module | None:
    """A copy no optimizer holds; its ``requires_grad`` flags stay as the policy's, so that
    its forward runs the policy's kernels (module docstring)."""
    return None if cfg.beta == 0 else copy.deepcopy(backbone).eval()


def _check(backbone, splits: Splits, cfg: RLConfig, user_ids) -> None:
    if not splits.train:
        raise DeepInterestError("no training examples: every user has fewer than 2 items")
    for name in ("token_logprobs", "start", "expand", "step", "save", "load"):
        if not hasattr(backbone, name):
            raise DeepInterestError(f"{type(backbone).__name__} lacks {name}; GRPO needs the "
                                    "decode protocol, save/load and token_logprobs")
    if user_ids is not None:
        top = max(e.user for e in splits.train)
        if top >= len(user_ids):
            raise DeepInterestError(f"user_ids has {len(user_ids)} ids, but the examples name "
                                    f"user position {top}; pass every dataset user's id")


def train_rl(backbone, catalog, splits: Splits, cfg: RLConfig, out_dir: str | Path, *,
             reward: Callable[..., list] | None = None,
             interests: InterestIndex | None = None, user_ids: Sequence[str] | None = None,
             progress: bool = True, evaluation: EvalConfig | None = None,
             provenance: dict[str, str] | None = None,
             restart_mismatched: bool = False) -> RLResult:
    """GRPO from ``backbone`` (the SFT model, also the KL reference); module docstring.

    ``reward`` (any TRL-style callable) replaces the config's ``rewards``;
    ``interests`` feeds the interest-aware terms (and makes the paper's
    composite the default); ``user_ids`` are the dataset's user ids by
    position, the ``user`` column (default: the position as text). Writes
    ``best/`` (checkpoint + ``rl.json``), ``last/`` and ``rl_result.json``
    under ``out_dir``; resume and ``restart_mismatched`` as
    :func:`~.sft.train_sft`.
    """
    _check(backbone, splits, cfg, user_ids)
    run = open_run(backbone, catalog, splits, cfg, out_dir, RL_FILE, evaluation=evaluation,
                   provenance=provenance)
    start_valid = run.evaluate(run.valid)
    parts = _parts(backbone, catalog, splits, cfg, reward, interests, user_ids, run.trie,
                   run.info)
    task = run.task(optimizer=parts.optimizer, scheduler=parts.scheduler,
                    lengths=parts.data.lengths, step=partial(_train_step, parts),
                    resume_free=_RESUME_FREE)
    settings = run.settings(restart_mismatched,
                            start=dict(start_valid.values) if cfg.keep_start else None)
    # Epochs go through _run_epoch, looked up when called: the resume test stops a run there.
    prog = run_epochs(task, settings, out_dir=run.out, info=run.info, progress=progress,
                      train=lambda epoch: _run_epoch(parts, epoch, progress))
    return run.finish(prog, RLResult, RESULT_FILE, start=start_valid,
                      start_valid=start_valid)


def _parts(backbone, catalog, splits: Splits, cfg: RLConfig, reward, interests, user_ids,
           trie: SIDTrie, info: dd.DistInfo) -> _Parts:
    data = TrainData.from_examples(splits.train, splits.max_history)
    steps = len(global_batches(data.lengths, cfg.batch_size, seed=cfg.seed, epoch=1,
                               info=info)) * cfg.epochs * cfg.num_iterations
    opt, sched = make_optimizer(backbone, cfg, steps)
    reward = (as_composite(reward) if reward is not None else
              build_reward(cfg.rewards, catalog=catalog, interests=interests,
                           group_size=cfg.group_size))
    users = list(user_ids) if user_ids is not None else [
        str(u) for u in range(max(e.user for e in splits.train) + 1)]
    return _Parts(dd.wrap(_LogProbForward(backbone), info), backbone, _reference(backbone, cfg),
                  opt, sched, data, [e.history for e in splits.train], users, reward, catalog,
                  trie, cfg, info)


def time_rl_steps(backbone, catalog, splits: Splits, cfg: RLConfig, steps: int, *,
                  interests: InterestIndex | None = None) -> tuple[float, int]:
    """Seconds per GRPO step over the first ``steps`` steps of epoch 1, and steps per epoch.

    Runs :func:`train_rl`'s own step (rollout, rewards, reference and policy
    forwards, update) without validation or checkpoints, like
    :func:`~.sft.time_train_steps` for SFT; ``backbone`` is trained by them.
    """
    _check(backbone, splits, cfg, None)
    set_threads(cfg.threads)
    info = dd.init_distributed()
    backbone.to(info.device)
    parts = _parts(backbone, catalog, splits, cfg, None, interests, None,
                   SIDTrie.from_catalog(catalog), info)
    batches = global_batches(parts.data.lengths, cfg.batch_size, seed=cfg.seed, epoch=1,
                             info=info)
    timed = batches[:steps]
    start = time.perf_counter()
    for rows in timed:
        _train_step(parts, dd.shard(rows, info), len(rows))
    seconds = time.perf_counter() - start
    dd.cleanup(info)
    return seconds / max(len(timed), 1), len(batches)


__all__ = ["RLConfig", "RLResult", "LossTerms", "RESULT_FILE", "RL_FILE", "group_advantages",
           "grpo_loss", "result_dict", "time_rl_steps", "train_rl", "zero_variance_share"]
