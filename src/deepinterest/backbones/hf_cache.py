"""The transformers KV-cache API, behind four functions that hide its versions.

:class:`~.causal_lm.CausalLMBackbone` keeps each prompt's keys and values
once and, at every decoding step, builds a fresh cache from them (its module
docstring says why). What that needs from transformers:

- **The forward keyword** is ``cache`` in transformers 5 (``past_key_values``
  before; the old name warns, then goes), so :func:`cache_keyword` reads it
  from the model's signature.
- **Plain caches only.** :func:`new_cache` passes the model config when the
  installed ``DynamicCache`` accepts it, so sliding-window or
  linear-attention models get their own layer kinds; :func:`plain_kv` then
  returns ``None`` and the backbone falls back to recomputing prompt +
  prefix every step: correct, slower.
- **Copies, not views.** :func:`cache_from` fills a new ``DynamicCache``:
  the model appends to a cache in place, and a ``DynamicCache`` grows by
  concatenation, so the stored prompt keys/values are copied twice per step
  (fill, append), cheap next to re-running the prompt.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import nn

KV = tuple[tuple[torch.Tensor, torch.Tensor], ...]  # per layer (keys, values)


def cache_keyword(model: nn.Module) -> str:
    """The forward keyword that takes a cache: ``cache`` or ``past_key_values``."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # peft
    params = inspect.signature(type(base).forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def new_cache(model: nn.Module) -> Any:
    """An empty ``DynamicCache`` for ``model``."""
    from transformers import DynamicCache

    try:  # with the config, sliding-window models get their own layer kinds (-> fallback)
        return DynamicCache(config=model.config)
    except TypeError:
        return DynamicCache()


def plain_kv(cache: Any) -> KV | None:
    """Each layer's (keys, values) when every layer is a plain growing cache, else None."""
    from transformers import cache_utils

    plain = getattr(cache_utils, "DynamicLayer", None)
    layers = getattr(cache, "layers", None)
    if plain is None or not layers or any(type(layer) is not plain for layer in layers):
        return None
    return tuple((layer.keys, layer.values) for layer in layers)


def cache_from(kv: KV) -> Any:
    """A fresh DynamicCache holding ``kv`` (a copy: the model appends to it in place)."""
    from transformers import DynamicCache

    cache = DynamicCache()
    for layer, (keys, values) in enumerate(kv):
        cache.update(keys, values, layer)
    return cache
