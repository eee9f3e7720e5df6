"""The TRL bridge: TRL's GRPOTrainer trains the causal LM on our constrained beams.

A tiny random Llama with a word-level tokenizer built here (no hub access),
six items with 3-position SIDs. The rollout must return exactly the beams of
:func:`constrained_beam_search`, ranked, with eos appended and masked; a real
``GRPOTrainer`` run must train only on valid SIDs, hand the rewards the
``target`` and ``rank`` columns, and move the weights.
"""

from __future__ import annotations

import sys
from types import SimpleNamespace

import pytest
import torch

trl = pytest.importorskip("trl", reason="TRL is not installed (pip install 'deepinterest[trl]')")

from tokenizers import Tokenizer, models, normalizers, pre_tokenizers  # noqa: E402
from transformers import LlamaConfig, PreTrainedTokenizerFast  # noqa: E402

from deepinterest.backbones.base import HistoryBatch, SIDCatalog, pad_histories  # noqa: E402
from deepinterest.backbones.causal_lm import CausalLMBackbone  # noqa: E402
from deepinterest.backbones.decoding import constrained_beam_search  # noqa: E402
from deepinterest.backbones.trie import SIDTrie  # noqa: E402
from deepinterest.data.model import Item, from_sequences  # noqa: E402
from deepinterest.data.splits import leave_one_out  # noqa: E402
from deepinterest.errors import DeepInterestError, MissingDependencyError  # noqa: E402
from deepinterest.rewards import as_codes  # noqa: E402
from deepinterest.train.trl_bridge import (  # noqa: E402
    REFERENCE_DIR, BeamRollout, make_grpo_trainer, prompt_dataset)

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py

WORDS = ("[PAD] [UNK] <s> </s> here is a user's purchase history , oldest first each item "
         "written as its semantic id . predict the of next will buy : answer none ( )").split()
CODES = torch.tensor([[0, 0, 0], [0, 1, 0], [1, 0, 0], [1, 1, 0], [2, 0, 0], [2, 0, 1]])
SEQUENCES = [("u0", [0, 1, 2, 3, 4]), ("u1", [5, 4, 3, 2, 1]), ("u2", [2, 0, 4, 1, 5]),
             ("u3", [3, 5, 1, 0, 2])]
G = 4



def tiny_backbone(**options) -> CausalLMBackbone:
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]",
                                        pad_token="[PAD]", bos_token="<s>", eos_token="</s>")
    config = LlamaConfig(vocab_size=len(WORDS), hidden_size=32, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, intermediate_size=64,
                         max_position_embeddings=256, tie_word_embeddings=False)
    torch.manual_seed(0)
    return CausalLMBackbone(catalog=SIDCatalog.from_codes(CODES), model=config,
                            tokenizer=tokenizer, **options)


def tiny_data():
    items = [Item(str(i)) for i in range(len(CODES))]
    dataset = from_sequences("tiny", items, [(u, [str(i) for i in s]) for u, s in SEQUENCES])
    return dataset, leave_one_out(dataset, max_history=4)


def config(tmp_path, **extra) -> trl.GRPOConfig:
    options = dict(output_dir=str(tmp_path / "grpo"), num_generations=G,
                   per_device_train_batch_size=2 * G, max_steps=2, learning_rate=1e-3,
                   beta=0.0, use_cpu=True, bf16=False, report_to="none", save_strategy="no",
                   logging_steps=1, disable_tqdm=True, seed=0)
    options.update(extra)
    return trl.GRPOConfig(**options)


def stub_trainer(*, process_index: int = 0, training: bool = True) -> SimpleNamespace:
    """What the rollout reads from a GRPOTrainer."""
    return SimpleNamespace(num_generations=G, num_generations_eval=G,
                           model=SimpleNamespace(training=training),
                           accelerator=SimpleNamespace(process_index=process_index))


def search(backbone, histories: list[tuple[int, ...]]):
    """Our own search's G beams for ``histories``, in eval mode."""
    batch = HistoryBatch(pad_histories(histories, 4), torch.arange(len(histories)))
    backbone.eval()
    result = constrained_beam_search(backbone, batch, SIDTrie.from_catalog(backbone.catalog),
                                     beam=G, topk=G)
    backbone.train()
    return result


def test_rollout_returns_the_ranked_beams_of_constrained_search():
    backbone = tiny_backbone()
    _, splits = tiny_data()
    rollout = BeamRollout(backbone)
    rollout.add(splits.train)
    examples = splits.train[:2]
    texts = [backbone.prompt_text(list(ex.history)) for ex in examples]
    out = rollout([t for t in texts for _ in range(G)], stub_trainer())
    items = search(backbone, [ex.history for ex in examples]).items
    expected = backbone.lm_ids[backbone.catalog.item_tokens(items)]  # [users, G, P]
    eos = backbone.tokenizer.eos_token_id
    assert out["logprobs"] is None and out["rank"] == [0, 1, 2, 3] * 2
    assert out["prompt_ids"] == [p for p in backbone.encode_prompts(texts) for _ in range(G)]
    assert out["completion_ids"] == [row + [eos] for user in expected.tolist() for row in user]
    assert out["env_mask"] == [[1, 1, 1, 0]] * (2 * G)  # eos is in the sequence, not the loss
    assert backbone.training  # the search ran in eval mode and put the mode back

    # Process 1 of slices of 6: its slice starts at global row 6, in the middle of a group.
    tail = rollout([texts[0]] * 2 + [texts[1]] * G, stub_trainer(process_index=1))
    assert tail["rank"] == [2, 3, 0, 1, 2, 3]
    assert tail["completion_ids"] == out["completion_ids"][2:]


def test_rollout_refuses_prompts_it_cannot_decode():
    backbone = tiny_backbone()
    _, splits = tiny_data()
    rollout = BeamRollout(backbone)
    rollout.add(splits.train[:1])
    known = backbone.prompt_text(list(splits.train[0].history))
    with pytest.raises(DeepInterestError, match="does not know the prompt"):
        rollout(["another prompt"] * G, stub_trainer())
    with pytest.raises(DeepInterestError, match="one prompt's copies"):
        rollout([known] * (G - 1) + ["another prompt"], stub_trainer())
    with pytest.raises(DeepInterestError, match="chat messages"):
        rollout([[{"role": "user", "content": known}]] * G, stub_trainer())


def test_prompt_dataset_columns():
    backbone = tiny_backbone()
    dataset, splits = tiny_data()
    rows = prompt_dataset(backbone, splits.train, user_ids=[u.id for u in dataset.users])
    assert rows.column_names == ["prompt", "target", "user"] and len(rows) == len(splits.train)
    first = splits.train[0]
    assert rows[0] == {"prompt": backbone.prompt_text(list(first.history)),
                       "target": first.target, "user": dataset.users[first.user].id}


def test_refused_settings(tmp_path, monkeypatch):
    backbone = tiny_backbone()
    _, splits = tiny_data()
    catalog = backbone.catalog
    args = config(tmp_path)
    with monkeypatch.context() as patch:
        patch.setitem(sys.modules, "trl", None)  # as if TRL were not installed
        with pytest.raises(MissingDependencyError, match=r"deepinterest\[trl\]"):
            make_grpo_trainer(backbone, catalog, splits, ["exact"], args)
    with pytest.raises(DeepInterestError, match="temperature"):
        make_grpo_trainer(backbone, catalog, splits, ["exact"], config(tmp_path, temperature=0.7))
    with pytest.raises(DeepInterestError, match="num_generations=8"):
        make_grpo_trainer(backbone, catalog, splits, ["exact"],
                          config(tmp_path, num_generations=8, per_device_train_batch_size=8))


class Recorder:
    """A reward that keeps what TRL passes it and pays nothing."""

    __name__ = "record"

    def __init__(self):
        self.calls: list[dict] = []

    def __call__(self, prompts, completions, **columns):
        self.calls.append({"prompts": list(prompts), "completions": list(completions),
                           **{k: list(columns[k]) for k in ("target", "rank", "completion_ids")}})
        return [0.0] * len(completions)


def test_grpo_trainer_trains_on_valid_beams(tmp_path):
    backbone = tiny_backbone()
    dataset, splits = tiny_data()
    catalog = backbone.catalog
    recorder = Recorder()
    before = {n: p.detach().clone() for n, p in backbone.model.named_parameters()}
    trainer = make_grpo_trainer(backbone, catalog, splits, ["exact", "prefix", recorder],
                                config(tmp_path, beta=0.01, per_device_eval_batch_size=G),
                                user_ids=[u.id for u in dataset.users], evaluate=True)
    assert_trl_scores_the_beams_as_the_search_ranked_them(trainer, backbone, splits.train[:2])
    trainer.train()

    assert trainer.state.global_step == 2 and len(recorder.calls) == 2
    assert (tmp_path / "grpo" / REFERENCE_DIR / "config.json").is_file()  # beta > 0
    sids = {tuple(s) for s in catalog.sids.tolist()}
    targets = {backbone.prompt_text(list(ex.history)): ex.target for ex in splits.train}
    eos = backbone.tokenizer.eos_token_id
    for call in recorder.calls:
        assert len(call["completions"]) == 2 * G and call["rank"] == list(range(G)) * 2
        codes = [as_codes(c, catalog) for c in call["completions"]]
        assert all(c in sids for c in codes)  # every completion is a SID of the catalogue
        for start in range(0, 2 * G, G):
            assert len(set(call["prompts"][start:start + G])) == 1
            assert len(set(codes[start:start + G])) == G  # distinct beams
        assert call["target"] == [targets[p] for p in call["prompts"]]
        assert all(ids[-1] == eos and len(ids) == 4 for ids in call["completion_ids"])
    logged = {k for record in trainer.state.log_history for k in record}
    assert {"rewards/exact/mean", "rewards/prefix/mean", "kl"} <= logged
    changed = [n for n, p in backbone.model.named_parameters()
               if not torch.equal(p.detach(), before[n])]
    assert changed, "two GRPO steps left every parameter where it was"
    assert "eval_rewards/exact/mean" in trainer.evaluate()  # beams of the validation prompts


def assert_trl_scores_the_beams_as_the_search_ranked_them(trainer, backbone, examples):
    """TRL's own log-probs of a beam's SID tokens (what its loss uses) sum to the beam's score.

    Reads TRL's ``_get_per_token_logps_and_entropies`` (private, TRL 1.16): if it
    moves, this check should move with it rather than be dropped.
    """
    texts = [backbone.prompt_text(list(ex.history)) for ex in examples]
    out = trainer.rollout_func([t for t in texts for _ in range(G)], trainer)
    prompts = [torch.tensor(ids) for ids in out["prompt_ids"]]
    width = max(len(p) for p in prompts)
    pad = backbone.tokenizer.pad_token_id
    ids = torch.stack([torch.cat([torch.full((width - len(p),), pad), p, torch.tensor(c)])
                       for p, c in zip(prompts, out["completion_ids"])])
    mask = torch.stack([torch.cat([torch.zeros(width - len(p), dtype=torch.long),
                                   torch.ones(len(p) + 4, dtype=torch.long)]) for p in prompts])
    with torch.no_grad():
        logps, _, _ = trainer._get_per_token_logps_and_entropies(trainer.model, ids, mask, 4)
    scores = search(backbone, [ex.history for ex in examples]).scores
    torch.testing.assert_close(logps[:, :3].sum(1), scores.flatten(), atol=1e-4, rtol=0)


def test_lora_only_where_trl_sees_the_trained_rows(tmp_path):
    pytest.importorskip("peft")
    lora = {"r": 4, "target_modules": ["q_proj", "v_proj"]}
    _, splits = tiny_data()
    # The default LoRA trains the SID rows of lm_head through a peft wrapper, which TRL's
    # fused LM head reads past: refused.
    wrapped = tiny_backbone(lora=lora)
    with pytest.raises(DeepInterestError, match="lm_head is wrapped by peft"):
        make_grpo_trainer(wrapped, wrapped.catalog, splits, ["exact"], config(tmp_path))
    # SID rows trained in the input embedding only: lm_head stays a plain Linear.
    sid_ids = tiny_backbone().sid_lm_ids
    backbone = tiny_backbone(lora={**lora, "trainable_token_indices": {"embed_tokens": sid_ids}})
    before = {n: p.detach().clone() for n, p in backbone.model.named_parameters()
              if p.requires_grad}
    trainer = make_grpo_trainer(backbone, backbone.catalog, splits, ["exact", "prefix"],
                                config(tmp_path, beta=0.01))
    assert "ref" in backbone.model.peft_config  # TRL's frozen copy of the adapter: the reference
    trainer.train()
    assert any(not torch.equal(p.detach(), before[n])
               for n, p in backbone.model.named_parameters() if n in before)
