"""GRPO: the objective by hand, rollouts, learning, the KL anchor, exact resume, LoRA."""

import json
import math

import pytest
import torch

from deepinterest.backbones.base import HistoryBatch, SIDCatalog, pad_histories
from deepinterest.backbones.decoding import constrained_beam_search
from deepinterest.backbones.t5 import T5Backbone
from deepinterest.backbones.trie import SIDTrie
from deepinterest.config import EvalConfig, RLConfig, RewardSpec
from deepinterest.data.model import Item, from_sequences
from deepinterest.data.splits import leave_one_out
from deepinterest.errors import DeepInterestError
from deepinterest.train import rl
from deepinterest.train.rl import group_advantages, grpo_loss, train_rl, zero_variance_share
from deepinterest.train.rollout import build_reward, rollout

N_ITEMS = 12
SMALL = dict(d_model=32, encoder_layers=1, decoder_layers=1, heads=2, d_kv=16, d_ff=64)
EVAL = EvalConfig(ks=[5], beam=5)
HIT_AND_PREFIX = [RewardSpec(name="exact"), RewardSpec(name="prefix")]


def _tiny():
    """8 users walking the items in steps of 5 (mod 12), as in test_sft.py."""
    items = [Item(str(i)) for i in range(N_ITEMS)]
    seqs = [(f"u{u}", [str((u + 5 * t) % N_ITEMS) for t in range(6)]) for u in range(8)]
    splits = leave_one_out(from_sequences("tiny", items, seqs), max_history=2)
    codes = torch.tensor([(i // 4, (i // 2) % 2, i % 2, 0) for i in range(N_ITEMS)])
    return SIDCatalog.from_codes(codes), splits


def _backbone(catalog, *, seed=0, dropout=0.0):
    torch.manual_seed(seed)
    return T5Backbone(catalog=catalog, dropout=dropout, **SMALL)


def _cfg(**extra) -> RLConfig:
    base = dict(epochs=3, batch_size=8, group_size=4, lr=1e-2, beta=0.0, threads=1,
                precision="fp32", rewards=HIT_AND_PREFIX)
    return RLConfig(**{**base, **extra})


def _same_weights(a, b, atol=0.0):
    for key, value in a.state_dict().items():
        torch.testing.assert_close(b.state_dict()[key], value, atol=atol, rtol=0, msg=key)


# -- the objective, by hand -----------------------------------------------------------

def test_advantages_by_hand_for_each_scaling():
    rewards = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.5, 0.5, 0.5, 0.5]])
    centred = torch.tensor([[0.75, -0.25, -0.25, -0.25], [0.0, 0.0, 0.0, 0.0]])
    # group: the first group's unbiased std is 0.5; the second has none (all equal)
    torch.testing.assert_close(group_advantages(rewards, epsilon=1e-6),
                               centred / torch.tensor([[0.5 + 1e-6], [1e-6]]))
    # batch: unbiased std of all 8 rewards = sqrt(0.875 / 7)
    torch.testing.assert_close(group_advantages(rewards, scale="batch", epsilon=0.0),
                               centred / math.sqrt(0.875 / 7))
    torch.testing.assert_close(group_advantages(rewards, scale="none"), centred)


def test_zero_variance_share_counts_groups_with_equal_rewards():
    rewards = torch.tensor([[1.0, 1.0, 1.0], [0.0, 1.0, 0.0], [0.25, 0.25, 0.25],
                            [0.0, 0.0, 1e-7]])
    assert zero_variance_share(rewards) == 0.5
    assert torch.all(group_advantages(rewards)[[0, 2]] == 0)  # no policy gradient there


def _scripted():
    """Two completions of 3 tokens, the second one 2 tokens long (mask), A = +1 and -1;
    the reference differs from the policy at one token by log 2."""
    logp = torch.tensor([[-1.0, -2.0, -0.5], [-1.0, -1.0, -3.0]], requires_grad=True)
    ref = logp.detach() + torch.tensor([[0.0, math.log(2.0), 0.0], [0.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    return logp, ref, mask, torch.tensor([1.0, -1.0])


K3 = 2.0 - math.log(2.0) - 1.0  # exp(d) - d - 1 at d = log 2
BETA = 0.1
# per-token loss at ratio 1: -A + beta * KL; masked token excluded
ROW0, ROW1 = [-1.0, -1.0 + BETA * K3, -1.0], [1.0, 1.0]
EXPECTED = {"grpo": (sum(ROW0) / 3 + sum(ROW1) / 2) / 2,
            "dapo": (sum(ROW0) + sum(ROW1)) / 5,
            "dr_grpo": (sum(ROW0) + sum(ROW1)) / (2 * 3)}


@pytest.mark.parametrize("loss_type", ["grpo", "dapo", "dr_grpo"])
def test_loss_by_hand_for_each_loss_type(loss_type):
    logp, ref, mask, adv = _scripted()
    terms = grpo_loss(logp, adv, ref_logp=ref, mask=mask, beta=BETA, loss_type=loss_type)
    assert terms.loss.item() == pytest.approx(EXPECTED[loss_type], abs=1e-6)
    assert terms.kl == pytest.approx(K3 / 5, abs=1e-7) and terms.clip_fraction == 0.0
    terms.loss.backward()
    # d/dlogp: -A from the ratio (it is 1), beta * (1 - exp(ref - logp)) from the KL
    per_token = torch.tensor([[-1.0, -1.0 - BETA, -1.0], [1.0, 1.0, 0.0]])
    weight = {"grpo": torch.tensor([[1 / 6], [1 / 4]]), "dapo": torch.tensor(1 / 5),
              "dr_grpo": torch.tensor(1 / 6)}[loss_type]
    torch.testing.assert_close(logp.grad, per_token * weight * mask)


def test_clipping_acts_only_where_it_should_and_stops_the_gradient():
    logp = torch.zeros(2, 2, requires_grad=True)
    old = torch.tensor([[-0.5, 0.5], [0.5, -0.5]])  # ratios e^0.5 / e^-0.5
    adv = torch.tensor([1.0, -1.0])
    terms = grpo_loss(logp, adv, old_logp=old, clip_epsilon=0.2)
    up, down = math.exp(0.5), math.exp(-0.5)
    # A > 0: ratio e^0.5 clipped to 1.2, e^-0.5 kept; A < 0: e^-0.5 clipped to 0.8, e^0.5 kept
    per_token = [[-1.2, -down], [0.8, up]]
    assert terms.loss.item() == pytest.approx(sum(map(sum, per_token)) / 4, abs=1e-6)
    assert terms.clip_fraction == 0.5 and terms.kl is None
    terms.loss.backward()
    torch.testing.assert_close(logp.grad, torch.tensor([[0.0, -down], [0.0, up]]) / 4)


# -- rollouts and log-probs ------------------------------------------------------------

def test_t5_token_logprobs_are_the_loss_and_grouped_equals_flat():
    catalog, _ = _tiny()
    model = _backbone(catalog)
    batch = HistoryBatch(pad_histories([(0, 5), (3,)], 2), torch.tensor([0, 1]))
    targets = torch.tensor([[10, 2, 7], [8, 8, 1]])
    grouped = model.token_logprobs(batch, targets)
    assert grouped.shape == (2, 3, 4) and grouped.dtype == torch.float32
    flat = model.token_logprobs(HistoryBatch(batch.items.repeat_interleave(3, 0),
                                             batch.users.repeat_interleave(3, 0)),
                                targets.reshape(-1))
    torch.testing.assert_close(grouped.reshape(6, 4), flat)
    torch.testing.assert_close(-grouped[:, 0].mean(), model.loss(batch, targets[:, 0]))


def test_rollouts_are_valid_items_beam_as_the_search_and_samples_seeded():
    catalog, _ = _tiny()
    model = _backbone(catalog).eval()
    trie = SIDTrie.from_catalog(catalog)
    batch = HistoryBatch(pad_histories([(0, 5), (3,), (1, 2)], 2), torch.arange(3))
    beam = rollout(model, batch, trie, group=5, generation="beam")
    search = constrained_beam_search(model, batch, trie, beam=5, topk=5)
    assert torch.equal(beam.items, search.items)
    assert all(len(set(row)) == 5 for row in beam.items.tolist())
    assert beam.ranks.tolist() == [list(range(5))] * 3
    torch.manual_seed(1)
    one = rollout(model, batch, trie, group=16, generation="sample", temperature=2.0)
    torch.manual_seed(1)
    two = rollout(model, batch, trie, group=16, generation="sample", temperature=2.0)
    assert torch.equal(one.items, two.items) and one.items.shape == (3, 16)
    assert one.items.min() >= 0 and one.items.max() < N_ITEMS
    for row in range(3):  # ranks order the samples by their sequence log-prob
        ordered = one.scores[row][one.ranks[row].argsort()]
        assert torch.all(ordered[:-1] >= ordered[1:])
    # a sample's score is the model's log-prob of that item
    logp = model.token_logprobs(batch, one.items).sum(-1)
    torch.testing.assert_close(one.scores, logp, atol=1e-5, rtol=0)
    with pytest.raises(DeepInterestError, match="exceeds"):
        rollout(model, batch, trie, group=13, generation="beam")


def test_default_rewards_and_a_reward_that_needs_interests():
    catalog, _ = _tiny()
    reward = build_reward(None, catalog=catalog, interests=None, group_size=4)
    assert reward.weights == {"exact": 1.0, "rank": 1.0}
    assert reward.rewards["rank"].group_size == 4 and reward.rewards["rank"].hit_reward == 0.0
    with pytest.raises(DeepInterestError, match="needs an interests artifact"):
        build_reward([RewardSpec(name="paper")], catalog=catalog, interests=None, group_size=4)


# -- training --------------------------------------------------------------------------

def test_mean_reward_rises_and_every_scalar_is_logged(tmp_path):
    catalog, splits = _tiny()
    model = _backbone(catalog)
    result = train_rl(model, catalog, splits, _cfg(epochs=15, eval_every=5, beta=0.01),
                      tmp_path, progress=False, evaluation=EVAL)
    first, last = result.history[0].scalars, result.history[-1].scalars
    assert last["reward"] > first["reward"] + 0.1
    assert last["reward/exact"] > first["reward/exact"]
    assert set(first) == {"reward", "reward/exact", "reward/prefix", "zero_variance", "kl",
                          "clip_fraction"}
    assert first["reward"] == pytest.approx(first["reward/exact"] + first["reward/prefix"])
    assert last["kl"] > 1e-4  # the policy has left the reference
    assert all(h.scalars["clip_fraction"] == 0.0 for h in result.history)  # one update each
    assert result.valid.values["ndcg@5"] >= result.start_valid.values["ndcg@5"]
    summary = json.loads((tmp_path / "rl_result.json").read_text())
    assert summary["best_epoch"] == result.best_epoch and len(summary["history"]) == 15
    assert summary["history"][0]["scalars"]["reward"] == first["reward"]
    meta = json.loads((tmp_path / "best" / "rl.json").read_text())
    assert meta["test"] == result.test.values and RLConfig(**meta["config"]) == _cfg(
        epochs=15, eval_every=5, beta=0.01)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_a_kl_only_objective_keeps_the_policy_at_the_reference(tmp_path, precision):
    # Under trie-constrained decoding every completion is valid: the `valid` reward is
    # 1 for all, every group has zero variance, and only the KL term is left.
    catalog, splits = _tiny()
    start = _backbone(catalog)
    model = _backbone(catalog)
    result = train_rl(model, catalog, splits,
                      _cfg(rewards=[RewardSpec(name="valid")], beta=0.5, lr=1e-2,
                             generation="sample", precision=precision),
                      tmp_path, progress=False, evaluation=EVAL)
    assert result.precision == precision
    assert all(h.scalars["zero_variance"] == 1.0 and h.scalars["kl"] < 1e-10
               for h in result.history)
    _same_weights(start, model, atol=1e-6)
    # the same run with a reward that varies moves the weights well past that tolerance
    moved = _backbone(catalog)
    train_rl(moved, catalog, splits, _cfg(beta=0.5, generation="sample", precision=precision),
             tmp_path / "b", progress=False, evaluation=EVAL)
    with pytest.raises(AssertionError):
        _same_weights(start, moved, atol=1e-3)


def test_resume_after_a_kill_ends_with_the_same_weights(tmp_path, monkeypatch):
    # Sampled groups and several updates per generation: the RNG, optimizer and
    # scheduler states must all come back.
    catalog, splits = _tiny()
    cfg = _cfg(generation="sample", num_iterations=2, beta=0.05, schedule="cosine",
               warmup_steps=1)
    straight = _backbone(catalog)
    full = train_rl(straight, catalog, splits, cfg, tmp_path / "straight", progress=False,
                    evaluation=EVAL)
    real = rl._run_epoch

    def killed_at_2(parts, epoch, progress):
        if epoch == 2:
            raise KeyboardInterrupt("killed")
        return real(parts, epoch, progress)

    with monkeypatch.context() as patch:
        patch.setattr(rl, "_run_epoch", killed_at_2)
        with pytest.raises(KeyboardInterrupt):
            train_rl(_backbone(catalog), catalog, splits, cfg, tmp_path / "resumed",
                     progress=False, evaluation=EVAL)
    restarted = _backbone(catalog)  # a new process starts from the same SFT weights
    epochs_run = []

    def spy(parts, epoch, progress):
        epochs_run.append(epoch)
        return real(parts, epoch, progress)

    monkeypatch.setattr(rl, "_run_epoch", spy)
    resumed = train_rl(restarted, catalog, splits, cfg, tmp_path / "resumed", progress=False,
                       evaluation=EVAL)
    assert epochs_run == [2, 3]  # epoch 1 came from last/, not from training again
    _same_weights(straight, restarted)
    assert [h.loss for h in resumed.history] == [h.loss for h in full.history]
    assert [h.scalars for h in resumed.history] == [h.scalars for h in full.history]
    assert resumed.test == full.test and resumed.best_epoch == full.best_epoch


# -- LoRA on a causal LM -------------------------------------------------------------------

def _tiny_causal_lm(catalog):
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import LlamaConfig, PreTrainedTokenizerFast

    from deepinterest.backbones.causal_lm import CausalLMBackbone

    words = ("[PAD] [UNK] <s> </s> here is a user's purchase history , oldest first each item "
             "written as its semantic id . predict the of next will buy : answer").split()
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tok.normalizer, tok.pre_tokenizer = normalizers.Lowercase(), pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]",
                                        pad_token="[PAD]", bos_token="<s>", eos_token="</s>")
    config = LlamaConfig(vocab_size=len(words), hidden_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, intermediate_size=64,
                         max_position_embeddings=256)
    torch.manual_seed(0)
    return CausalLMBackbone(catalog=catalog, model=config, tokenizer=tokenizer,
                            lora={"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]})


def test_lora_causal_lm_trains_only_adapters_and_sid_rows(tmp_path):
    pytest.importorskip("peft")
    catalog, splits = _tiny()
    model = _tiny_causal_lm(catalog)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    train_rl(model, catalog, splits, _cfg(epochs=1, beta=0.01), tmp_path, progress=False,
             evaluation=EVAL)
    # The trained state as last/ keeps it (best/ of a model built from a bare config is
    # saved merged, so the backbone reloaded from it has the adapters folded in).
    after = torch.load(tmp_path / "last" / "trainer.pt", weights_only=False)["model"]
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all("lora_" in k or "trainable_tokens" in k for k in changed)


def test_timing_runs_the_trainer_s_own_steps_and_counts_the_epoch():
    catalog, splits = _tiny()
    model = _backbone(catalog)
    before = [p.detach().clone() for p in model.parameters()]
    cfg = _cfg(lr=1e-2)
    step_s, steps = rl.time_rl_steps(model, catalog, splits, cfg, 2)
    assert step_s > 0
    assert steps == math.ceil(len(splits.train) / cfg.batch_size)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))



def test_keep_start_lets_the_given_model_win_a_tie(tmp_path):
    # The KL-only objective of the test above leaves the policy where it started, so every
    # epoch validates as the start did: the start (epoch 0) keeps best unless excluded.
    catalog, splits = _tiny()
    cfg = _cfg(rewards=[RewardSpec(name="valid")], beta=0.5, generation="sample", epochs=2)
    kept = train_rl(_backbone(catalog), catalog, splits, cfg, tmp_path / "a",
                    progress=False, evaluation=EVAL)
    assert kept.best_epoch == 0 and kept.valid.values == kept.start_valid.values
    assert json.loads((tmp_path / "a" / "best" / "rl.json").read_text())["epoch"] == 0
    dropped = train_rl(_backbone(catalog), catalog, splits,
                       cfg.model_copy(update={"keep_start": False}), tmp_path / "b",
                       progress=False, evaluation=EVAL)
    assert dropped.best_epoch == 1
