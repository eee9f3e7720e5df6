"""Data-parallel helpers: the same trainer runs alone or under ``torchrun``.

``torchrun --nproc_per_node N`` and ``accelerate launch`` both export
``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``;
:func:`init_distributed` reads them and joins the process group with gloo on
CPU or nccl on CUDA. With ``WORLD_SIZE`` unset or 1 every helper here is a
no-op, so single-process code pays nothing.

Design decisions:

- **DDP wraps a loss forward.** ``DistributedDataParallel`` only syncs
  gradients for work done inside its ``forward``, while backbones expose
  ``loss(batch, targets)``. :class:`LossForward` is a thin ``nn.Module``
  whose ``forward`` calls ``backbone.loss`` (plus the optional alignment
  loss); DDP wraps that module, so gradient bucketing and overlap work as
  usual and no backbone needs a special ``forward``. (The alternative, manual
  all-reduce of ``.grad`` after backward, gives no overlap and is easy to
  get subtly wrong with tied weights.)
- **Global batches, split evenly.** Every rank builds the same epoch plan of
  *global* batches (``batch_size x world`` examples each) and takes the
  ``rank``-th of ``world`` near-equal slices of each (:func:`shard`). Each
  rank scales its mean loss by ``n_rank x world / n_global``; since DDP
  averages gradients over ranks, the update is exactly the gradient of the
  mean loss over the global batch: the run matches a single process with
  batch ``batch_size x world`` (``tests/train/test_ddp.py``), even for a
  ragged last batch.
- **Evaluation is sharded too**: each rank ranks examples ``rank::world``
  and the ranks are gathered, so every process computes the same metrics
  and takes the same early-stopping decision without a broadcast. Only rank
  0 writes checkpoints; a barrier follows every write.
- **Leaving the group drains gloo's worker first** (:func:`cleanup`). gloo
  frees a finished collective on its worker thread, and freeing the tensors
  of an ``all_gather_object`` there needs the GIL; the group's destructor
  joins that thread while holding the GIL. If the last collectives are freed
  at that moment, the rank deadlocks at exit (seen under load: the rank
  outlived its launcher). Two barriers, waited on with the GIL released, let
  the worker free everything before them; the two barrier works themselves
  (which hold the last collectives) are kept until the process ends, so
  nothing is left for the worker to free during teardown.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from ..backbones.base import HistoryBatch

# Rank 0 may spend minutes writing or evaluating while others wait at a barrier.
_TIMEOUT = datetime.timedelta(hours=3)


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world: int
    local_rank: int
    device: torch.device
    owned: bool = False  # this process created the group, so it also destroys it

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


def init_distributed(device: str | None = None) -> DistInfo:
    """Join the process group named by the launcher's env, or describe a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available() and device != "cpu"
    if device is not None:
        dev = torch.device(device)
    else:
        dev = torch.device(f"cuda:{local}" if cuda and world > 1 else "cuda" if cuda else "cpu")
    owned = world > 1 and not dist.is_initialized()
    if owned:
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo", timeout=_TIMEOUT)
    return DistInfo(rank, world, local, dev, owned)


class LossForward(nn.Module):
    """``forward`` = the backbone's training loss, so DDP can wrap it (see module docstring)."""

    def __init__(self, backbone: nn.Module, *, alignment_weight: float = 0.0) -> None:
        super().__init__()
        self.backbone = backbone
        self.alignment_weight = alignment_weight

    def forward(self, items: torch.Tensor, users: torch.Tensor,
                targets: torch.Tensor) -> torch.Tensor:
        loss = self.backbone.loss(HistoryBatch(items, users), targets)
        if self.alignment_weight:
            # LLM backbones' title<->SID tasks on the batch's target items.
            loss = loss + self.alignment_weight * self.backbone.alignment_loss(targets)
        return loss


def wrap(module: nn.Module, info: DistInfo) -> nn.Module:
    """``module`` itself alone; a DDP wrapper (rank 0's weights broadcast) under a launcher."""
    if not info.active:
        return module
    from torch.nn.parallel import DistributedDataParallel

    ids = [info.device.index] if info.device.type == "cuda" else None
    # No buffers to sync (lookup tables only); every parameter takes part in the loss.
    return DistributedDataParallel(module, device_ids=ids, broadcast_buffers=False)


def shard(batch: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """This rank's slice of a global batch (near-equal slices, in rank order)."""
    if not info.active:
        return batch
    return torch.tensor_split(batch, info.world)[info.rank]


def barrier(info: DistInfo) -> None:
    if info.active:
        dist.barrier()


def all_gather(value: Any, info: DistInfo) -> list[Any]:
    """Every rank's ``value`` (picklable), in rank order."""
    if not info.active:
        return [value]
    out: list[Any] = [None] * info.world
    dist.all_gather_object(out, value)
    return out


def all_sum(values: list[float], info: DistInfo) -> list[float]:
    """Element-wise sum of small float lists over ranks (epoch loss totals)."""
    if not info.active:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=info.device)
    dist.all_reduce(tensor)
    return tensor.tolist()


# The final barrier works of each drained group, kept for the life of the process
# (module docstring: freeing them on gloo's worker during teardown can deadlock).
_DRAINED: list[Any] = []


def cleanup(info: DistInfo, *, drain: bool = True) -> None:
    """Drain the group (``drain``; module docstring), then leave it if
    :func:`init_distributed` created it. ``drain=False`` is for error paths,
    where the other ranks may never reach a barrier."""
    if drain and info.active and dist.is_initialized():
        for _ in range(2):  # the second runs only once the worker is done with the first
            work = dist.barrier(async_op=True)
            work.wait()
            _DRAINED.append(work)
    if info.owned and dist.is_initialized():
        dist.destroy_process_group()
