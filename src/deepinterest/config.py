"""Pydantic configs of every stage, read from TOML or YAML, saved with artifacts.

Every model forbids unknown keys, so a typo fails loudly instead of being
ignored. :func:`load_config` turns a validation failure into a
:class:`~deepinterest.errors.ConfigError` that names the file, the key path,
its line (when it can be found) and what was expected.

Relative data paths inside a config file are resolved against the file's
folder, so a config and its data can move together; ``workdir`` stays
relative to the current directory, where a user expects outputs to land.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from .config_file import format_errors, read_mapping
from .data.splits import DEFAULT_MAX_HISTORY
from .data.synthetic_config import SyntheticConfig
from .errors import ConfigError
from .eval.metrics import DEFAULT_BEAM, DEFAULT_KS
from .registry import available
from .train.sasrec_config import HybridConfig


def registered(group: str, value: str, what: str, *, also: tuple[str, ...] = ()) -> str:
    """``value`` if it names a component of ``group`` (or one of ``also``), else a ValueError.

    Components register through entry points, so a plugin's name is valid here
    as soon as its package is installed; the check runs when a config is read,
    so a typo is reported with the config's file and line.
    """
    names = sorted(available(group))
    if value not in (*also, *names):
        choices = ", ".join([*also, *names]) or "none installed"
        raise ValueError(f"unknown {what} {value!r}; use one of: {choices}")
    return value


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(StrictModel):
    """Where the interactions and item texts come from."""

    source: str = Field("default", description="'default' (embedded dataset) or a path")
    format: str = Field("auto", description="'auto' (guess), 'default' or a registered "
                        "reader: p5, recbole, amazon2014/2018/2023 or a plugin's name")
    items: Path | None = Field(None, description="RecBole .item file (P5/RecBole sources)")
    meta: Path | None = Field(None, description="Amazon meta file (raw Amazon sources)")
    kcore: int | None = Field(None, ge=0, description="k-core filter; None = format default")
    synthetic: SyntheticConfig = Field(default_factory=SyntheticConfig)

    @field_validator("format")
    @classmethod
    def _known_format(cls, value: str) -> str:
        return registered("readers", value, "data format", also=("auto", "default"))


class SplitConfig(StrictModel):
    max_history: int = Field(DEFAULT_MAX_HISTORY, ge=1,
                             description="most recent items kept as input")


class EvalConfig(StrictModel):
    ks: list[int] = Field(default_factory=lambda: list(DEFAULT_KS))
    beam: int = Field(DEFAULT_BEAM, ge=1, description="beam width of generative models")

    @field_validator("ks")
    @classmethod
    def _positive_sorted(cls, ks: list[int]) -> list[int]:
        if not ks or any(k < 1 for k in ks):
            raise ValueError("ks must be a non-empty list of positive integers")
        return sorted(set(ks))

    @model_validator(mode="after")
    def _beam_covers_ks(self) -> EvalConfig:
        # A beam of b ranks only b items: HR@K for K > b would silently equal HR@b.
        if self.beam < max(self.ks):
            raise ValueError(f"beam ({self.beam}) is below the largest K in ks "
                             f"({max(self.ks)}): HR@{max(self.ks)} would be capped at "
                             f"HR@{self.beam}; set beam >= {max(self.ks)} or drop that K")
        return self


class EncoderConfig(StrictModel):
    """Text encoder for item embeddings (docs/tokenizers.md)."""

    name: str = Field("sentence-transformers/all-MiniLM-L6-v2",
                      description="sentence-transformers or Hugging Face model name or path")
    kind: str = Field("auto", description="'auto' or a registered encoder: "
                      "sentence-transformers, hf (mean pooling) or a plugin's name")
    batch_size: int = Field(64, ge=1)
    normalize: bool = True
    device: str | None = None

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, value: str) -> str:
        return registered("encoders", value, "encoder kind", also=("auto",))


class TokenizeConfig(StrictModel):
    """Item embeddings -> semantic IDs (``di tokenize``)."""

    encoder: EncoderConfig = Field(default_factory=EncoderConfig)
    text_fields: list[str] = Field(
        default_factory=lambda: ["title", "brand", "categories", "description"],
        description="item fields joined into the text that is embedded, in order")
    quantizer: str = Field("rkmeans", description="registered quantizer: rkmeans, rqvae, ...")
    levels: int = Field(3, ge=1, le=8, description="code levels before the suffix")
    codebook_size: int | Literal["auto"] = Field(
        "auto", description="codes per level; auto = 256, or fewer for small catalogues")
    options: dict[str, Any] = Field(default_factory=dict,
                                    description="extra keyword options of the quantizer")
    balanced_last_level: bool = Field(
        False, description="Sinkhorn re-assignment of colliding items' last code (LC-Rec)")
    seed: int = 0
    cache_dir: Path | None = Field(None, description="embedding cache; default ~/.cache")
    # Interest-enhanced SIDs (docs/tokenizers.md): off unless `interests` names an artifact.
    interests: str | None = Field(
        None, description="interests artifact (a `di mine` folder) whose descriptors join the "
        "item embeddings; 'mine' = the run's own interests folder; None = plain SIDs")
    interest_mode: Literal["text", "fusion", "first"] = Field(
        "text", description="text: embed 'item text; interests: d1; d2' (the paper's); "
        "fusion: normalize((1 - w) * item vector + w * descriptors vector); first: the first "
        "`interest_levels` codes quantize the descriptors vector alone, the rest the item "
        "text within that interest (rkmeans)")
    interest_labels: Literal["positive", "all"] = Field(
        "positive", description="descriptors used: positive = reward label 1 only, all = every one")
    interest_weight: float = Field(0.5, ge=0.0, le=1.0,
                                   description="w, the descriptors' share in fusion mode")
    interest_levels: int = Field(1, ge=1, description="first mode: the code levels that "
                                 "quantize the interests alone (fewer than `levels`)")
    max_interests: int | None = Field(None, ge=1, description="descriptors per item at most, "
                                      "first in order; None = all")
    # The image slot (docs/tokenizers.md): off at weight 0.
    image_weight: float = Field(
        0.0, ge=0.0, lt=1.0, description="w, the share of each item's first image, mapped "
        "into the text space by a ridge map fitted on the items with both; 0 = text only")
    image_encoder: str = Field("openai/clip-vit-large-patch14",
                               description="Hugging Face CLIP checkpoint (name or folder)")
    image_ridge: float = Field(1.0, gt=0.0, description="ridge penalty of the image map")
    allow_id_only: bool = Field(
        False, description="give items SIDs from their ids when no item has any text (the "
        "SIDs then carry no meaning); false = such a catalogue is an error")
    # The collaborative slot (tokenizers/collab.py): off at weight 0.
    collab_weight: float = Field(
        0.0, ge=0.0, lt=1.0, description="w, the share (of squared norm) of an item vector "
        "factorised from training co-occurrence, concatenated to the text vector; 0 = off")
    collab_dim: int = Field(64, ge=2, description="dimensions of the collaborative vector")
    collab_window: int = Field(3, ge=1, description="items at most this far apart in a "
                               "user's training history co-occur (weight 1 / distance)")
    # A second SID view of the same items (backbones/t5_views.py): off unless set.
    second: dict[str, Any] | None = Field(
        None, description="settings that differ for a second SID view of the items (e.g. "
        "interests = 'mine', interest_mode = 'fusion'), tokenized into <workdir>/sids-second; "
        "needs train.backbone = 't5-views'")

    @field_validator("interests", mode="before")
    @classmethod
    def _interests_path(cls, value: Any) -> Any:
        if isinstance(value, Path):
            return str(value)
        if isinstance(value, str) and not value.strip():
            raise ValueError("interests is empty; name an interests folder, 'mine' or leave "
                             "it unset")
        return value

    @field_validator("quantizer")
    @classmethod
    def _known_quantizer(cls, value: str) -> str:
        return registered("quantizers", value, "quantizer")

    @field_validator("codebook_size")
    @classmethod
    def _size(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 2:
            raise ValueError("codebook_size must be >= 2 or 'auto'")
        return value

    def second_view(self) -> TokenizeConfig | None:
        """The second view's settings: these, with ``second``'s changes (None when unset)."""
        if self.second is None:
            return None
        if "second" in self.second:
            raise ValueError("tokenize.second cannot hold a third view ('second' inside it)")
        return TokenizeConfig.model_validate(
            self.model_dump(exclude={"second"}) | self.second)

    @model_validator(mode="after")
    def _second_view_is_valid(self) -> TokenizeConfig:
        try:
            self.second_view()
        except ValidationError as err:  # named as the view's own fields, values not echoed
            problems = "; ".join(".".join(map(str, e["loc"])) + ": " * bool(e["loc"])
                                 + e["msg"] for e in err.errors())
            raise ValueError(f"the second view's settings: {problems}") from None
        return self

    @model_validator(mode="after")
    def _first_mode_splits_rkmeans(self) -> TokenizeConfig:
        if self.interest_mode == "first" and (self.quantizer, self.interest_levels < self.levels
                                              ) != ("rkmeans", True):
            raise ValueError(f"interest_mode = 'first' needs quantizer = 'rkmeans' (its levels "
                             f"split) and interest_levels below levels ({self.levels}); got "
                             f"{self.quantizer!r} and {self.interest_levels}")
        if self.interest_mode == "first" and self.interests is not None and self.image_weight:
            # The image map would mix both halves of [interests | item] that the levels split.
            raise ValueError("interest_mode = 'first' and image_weight > 0 cannot be combined "
                             "yet: use interest_mode = 'fusion' or 'text' with images")
        return self


class TrainerConfig(StrictModel):
    """The settings every trainer has (SFT, GRPO): schedule, validation, early stopping,
    checkpoints and resume. The trainers set their own defaults for some of them."""

    epochs: int = Field(60, ge=0, description="passes over the training examples")
    batch_size: int = Field(256, ge=1, description="examples per process and step")
    lr: float = Field(2e-3, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    warmup_steps: int = Field(100, ge=0)
    schedule: Literal["cosine", "constant"] = "cosine"
    grad_clip: float | None = Field(1.0, gt=0)
    patience: int | None = Field(10, ge=1, description="evaluations without gain; None "
                                 "(0 in a file) = off")
    eval_every: int = Field(1, ge=1, description="epochs between validations")
    eval_users: int | None = Field(None, ge=1, description="validation subset; None = all")
    eval_batch_size: int = Field(256, ge=1, description="users per validation beam search")
    seed: int = 0
    threads: int | None = Field(None, ge=1, description="torch CPU threads; None = the usable "
                                "cores that other jobs leave free")
    resume: bool = True
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="bf16: autocast the training forward to bfloat16 (weights, "
        "gradients and optimizer stay fp32; validation runs in fp32); auto: bf16 where the "
        "CPU or GPU computes it natively, else fp32")

    @field_validator("patience", mode="before")
    @classmethod
    def _zero_patience_is_off(cls, value: Any) -> Any:
        # TOML has no null: patience = 0 is how a config file turns early stopping off.
        return None if value == 0 and not isinstance(value, bool) else value


class SFTConfig(TrainerConfig):
    """Trainer settings, saved with every checkpoint.

    Validation ranks as evaluation does: beam and cut-offs come from
    :class:`EvalConfig`, the history length from :class:`SplitConfig`.
    Defaults chosen on the default dataset's validation split (docs/training.md).
    """

    epochs: int = Field(60, ge=0, description="passes over the training prefixes")
    alignment_weight: float = Field(0.0, ge=0)


class RewardSpec(StrictModel):
    """One term of the GRPO reward: a registered reward, its weight and keyword options."""

    name: str = Field(description="registered reward: exact, valid, prefix, rank, interest, "
                      "quality, paper, composite or a plugin's name")
    weight: float = Field(1.0, gt=0.0, allow_inf_nan=False,
                          description="its weight in the sum (finite, above 0; drop a reward "
                          "rather than weighting it 0)")
    options: dict[str, Any] = Field(default_factory=dict,
                                    description="keyword options of the reward (the catalogue, "
                                    "interests and group size are passed for you)")
    label: str | None = Field(None, description="name in the logs (default: name); lets one "
                              "reward appear twice with different options")

    @field_validator("name")
    @classmethod
    def _known_reward(cls, value: str) -> str:
        return registered("rewards", value, "reward")

    @property
    def key(self) -> str:
        return self.label or self.name


class RLConfig(TrainerConfig):
    """Reinforcement learning of the SFT model with GRPO (``di train --stage rl``).

    Defaults follow DeepInterestGR (arXiv 2602.18907: group size 8, KL 0.001,
    advantage epsilon 1e-6, lr 1e-5, 2 epochs) and MiniOneRec (a group is the
    beams of one constrained beam search; one update per generation).
    docs/training.md explains each field.
    """

    enabled: bool = Field(False, description="run this stage in `di run` (after SFT); "
                          "`di train --stage rl` runs it either way")
    epochs: int = Field(2, ge=0, description="passes over the training examples")
    batch_size: int = Field(32, ge=1, description="histories per process and step, each "
                            "with group_size completions")
    group_size: int = Field(8, ge=2, description="completions per history (G)")
    generation: Literal["beam", "sample"] = Field(
        "beam", description="beam: the G beams of one trie-constrained beam search (distinct, "
        "ordered; MiniOneRec); sample: G trie-constrained samples at `temperature`")
    temperature: float = Field(1.0, gt=0, description="sampling temperature (generation = "
                               "sample)")
    rewards: list[RewardSpec] | None = Field(
        None, description="reward terms, summed with their weights; None = the paper's "
        "composite when the run has an interests artifact, else exact + MiniOneRec's rank "
        "penalty")
    scale_rewards: Literal["group", "batch", "none"] = Field(
        "group", description="advantage (r - group mean) divided by the group's std, the "
        "batch's std, or nothing")
    advantage_epsilon: float = Field(1e-6, gt=0, description="added to the std before "
                                     "dividing")
    loss_type: Literal["grpo", "dr_grpo", "dapo"] = Field(
        "grpo", description="how per-token losses are averaged (TRL's definitions)")
    beta: float = Field(0.001, ge=0, description="weight of the k3 KL to the SFT model; 0 "
                        "skips the reference model")
    clip_epsilon: float = Field(0.2, gt=0, description="PPO clipping of the ratio to "
                                "[1 - eps, 1 + eps]")
    num_iterations: int = Field(1, ge=1, description="updates per generation (1: ratio 1, "
                                "clipping inert)")
    lr: float = Field(1e-5, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    warmup_steps: int = Field(0, ge=0)
    schedule: Literal["cosine", "constant"] = "constant"
    patience: int | None = Field(None, ge=1, description="evaluations without gain; None "
                                 "(0 in a file) = off")
    keep_start: bool = Field(True, description="the SFT model (epoch 0) competes for best on "
                             "validation, so RL never ends below its start; false: the best "
                             "of the RL epochs only")
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="as sft.precision: bf16 autocasts rollouts and the training and "
        "reference forwards; auto = bf16 where computed natively")

    @field_validator("rewards")
    @classmethod
    def _distinct(cls, specs: list[RewardSpec] | None) -> list[RewardSpec] | None:
        if specs is None:
            return None
        if not specs:
            raise ValueError("rewards is empty; name at least one, or leave it unset for the "
                             "default")
        keys = [s.key for s in specs]
        if len(set(keys)) != len(keys):
            raise ValueError(f"rewards need distinct names (set `label` to use one twice): "
                             f"{keys}")
        return specs


class TrainConfig(StrictModel):
    """The generative backbone, its supervised fine-tuning (``di train --stage sft``) and
    GRPO (``di train --stage rl``)."""

    backbone: str = Field("t5", description="registered backbone: t5, causal-lm, ...")
    options: dict[str, Any] = Field(default_factory=dict,
                                    description="keyword options of the backbone")
    init_from_codebooks: bool = Field(
        False, description="start the code embeddings from the quantizer's codewords "
        "(backbones with init_code_embeddings, e.g. t5)")
    interest_tokens: int = Field(
        0, ge=0, le=16, description="the K interests most present in a history as K extra "
        "encoder inputs (backbones with interest tokens, e.g. t5; needs the run's interests)")
    interest_vocabulary: int = Field(256, ge=1, description="interest tokens: the descriptor "
                                     "texts found on the most items, each its own token")
    sft: SFTConfig = Field(default_factory=SFTConfig)
    rl: RLConfig = Field(default_factory=RLConfig)

    @field_validator("backbone")
    @classmethod
    def _known_backbone(cls, value: str) -> str:
        return registered("backbones", value, "backbone")


class ComponentSpec(StrictModel):
    """A registered component by name, with its keyword options."""

    options: dict[str, Any] = Field(default_factory=dict,
                                    description="keyword options of the component")


class MinerSpec(ComponentSpec):
    """One miner of the ensemble (``[[mine.miners]]`` in a config file)."""

    backend: str = Field(description="registered miner: embedding, openai, anthropic, "
                         "transformers, vllm, scripted or a plugin's name")
    label: str | None = Field(None, description="name in the artifact (default: backend)")

    @field_validator("backend")
    @classmethod
    def _known_backend(cls, value: str) -> str:
        return registered("miners", value, "miner")

    @field_validator("options")
    @classmethod
    def _key_variable(cls, value: dict[str, Any]) -> dict[str, Any]:
        """A key typed as ``api_key_env`` is refused at load, before anything is written."""
        from .secrets import check_env_name

        name = value.get("api_key_env")
        if name is not None:
            check_env_name(str(name))
        return value

    @property
    def name(self) -> str:
        return self.label or self.backend


class EnsembleSpec(ComponentSpec):
    kind: str = Field("vote", description="registered ensembler: vote, union, confidence")

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, value: str) -> str:
        return registered("ensemblers", value, "ensembler")


class LabelerSpec(ComponentSpec):
    kind: str = Field("heuristic", description="registered labeler: heuristic, judge, "
                      "classifier")
    teacher: LabelerSpec | None = Field(
        None, description="for a labeler that learns (classifier): the labeler, e.g. "
        "{kind = 'judge', options = {...}}, whose labels on a sample it is fitted to")
    sample: int = Field(200, ge=1, description="items the teacher labels for the fit")

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, value: str) -> str:
        return registered("labelers", value, "labeler")


class CollaborativeSpec(StrictModel):
    """Item descriptors completed from co-purchased items' (``miners/collaborative.py``)."""

    weight: float = Field(0.5, gt=0.0, lt=1.0, description="share of a descriptor's "
                          "confidence taken from the neighbours' (1 - weight: the item's own)")
    neighbours: int = Field(10, ge=1, description="co-purchased items lending descriptors")
    window: int = Field(3, ge=1, description="co-purchases: items at most this far apart in "
                        "a user's training sequence")
    top_k: int = Field(8, ge=1, le=8, description="descriptors kept per item")


class MineConfig(StrictModel):
    """Deep-interest mining (``di mine``): miners, their ensemble and reward labels."""

    miners: list[MinerSpec] = Field(
        default_factory=lambda: [MinerSpec(backend="embedding")],
        description="miners asked about every item (the embedding miner needs no LLM); "
        "an empty list skips mining in `di run`")
    captioner: MinerSpec | None = Field(
        None, description="a miner that takes images (openai, anthropic), asked for a factual "
        "caption of each item's main image first; the caption joins the item's evidence")
    ensemble: EnsembleSpec = Field(default_factory=EnsembleSpec)
    labeler: LabelerSpec = Field(default_factory=LabelerSpec)
    collaborative: CollaborativeSpec | None = Field(
        None, description="complete each item's descriptors with those of the items bought "
        "near it in the training split; None = each item's own only")
    users: Literal["aggregate", "miner", "none"] = Field(
        "aggregate", description="users' interests, from the items before each user's "
        "validation target: aggregated from those items' interests, or asked of a miner")
    user_miner: str | None = Field(None, description="label of the miner asked about users "
                                   "(users = 'miner'); default: the first miner")
    user_top_k: int = Field(8, ge=1, description="descriptors kept per user")
    limit: int | None = Field(None, ge=1, description="mine only the first N items")
    shard: str | None = Field(None, description="'I/N': mine items I, I+N, I+2N, ... only "
                              "(split a catalogue across machines; `di mine merge` joins them)")
    budget: float | None = Field(None, gt=0, description="dollars; None = no limit")
    max_failed_share: float = Field(
        0.05, ge=0.0, le=1.0, description="the stage fails (writing nothing) when more than "
        "this share of items got no answer; below it, a rerun asks the failed items again")
    cache: Path | None = Field(None, description="answer cache (SQLite); default ~/.cache")

    @model_validator(mode="after")
    def _user_miner_known(self) -> MineConfig:
        names = [m.name for m in self.miners]
        if self.user_miner is not None and self.user_miner not in names:
            raise ValueError(f"user_miner {self.user_miner!r} is not one of the miners {names}")
        return self

    @field_validator("shard")
    @classmethod
    def _shard(cls, value: str | None) -> str | None:
        if value is None:
            return None
        index, _, count = value.partition("/")
        if not (index.isdigit() and count.isdigit() and int(index) < int(count)):
            raise ValueError(f"shard must be 'I/N' with 0 <= I < N, e.g. '0/4'; got {value!r}")
        return value

    @property
    def shard_of(self) -> tuple[int, int] | None:
        """(I, N) of ``shard``, or None."""
        if self.shard is None:
            return None
        index, count = self.shard.split("/")
        return int(index), int(count)

    @field_validator("miners")
    @classmethod
    def _distinct(cls, miners: list[MinerSpec]) -> list[MinerSpec]:
        names = [m.name for m in miners]
        if len(set(names)) != len(names):  # an empty list turns mining off in `di run`
            raise ValueError(f"miners need distinct labels: {names}")
        return miners


class RunConfig(StrictModel):
    """The whole chain; ``di run --config FILE`` reads one of these."""

    workdir: Path = Path("runs/default")
    data: DataConfig = Field(default_factory=DataConfig)
    split: SplitConfig = Field(default_factory=SplitConfig)
    mine: MineConfig = Field(default_factory=MineConfig)
    tokenize: TokenizeConfig = Field(default_factory=TokenizeConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    hybrid: HybridConfig = Field(default_factory=HybridConfig)

    @field_validator("workdir", mode="before")
    @classmethod
    def _not_empty(cls, value: Any) -> Any:
        # Path("") is the current folder: an empty value would spread a run's folders there.
        if isinstance(value, str) and not value.strip():
            raise ValueError("workdir is empty; name the run folder, e.g. runs/NAME")
        # "." or ".." would spread the run's stage folders over an existing folder.
        if isinstance(value, (str, Path)) and Path(value).name in ("", ".", ".."):
            raise ValueError(f"workdir {str(value)!r} is not a run folder of its own; name "
                             "a new or earlier run folder, e.g. runs/NAME")
        return value


def _resolve_paths(cfg: RunConfig, base: Path) -> RunConfig:
    data = cfg.data
    if data.source != "default" and not Path(data.source).is_absolute():
        data.source = str(base / data.source)
    for name in ("items", "meta"):
        value = getattr(data, name)
        if value is not None and not value.is_absolute():
            setattr(data, name, base / value)
    cache = cfg.tokenize.cache_dir
    if cache is not None and not cache.is_absolute():
        cfg.tokenize.cache_dir = base / cache
    if cfg.mine.cache is not None and not cfg.mine.cache.is_absolute():
        cfg.mine.cache = base / cfg.mine.cache
    return cfg


def load_config(path: str | Path) -> RunConfig:
    """Read and validate a run config from a TOML or YAML file."""
    path = Path(path)
    raw = read_mapping(path)
    try:
        cfg = RunConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_errors(path, exc)) from None
    return _resolve_paths(cfg, path.parent)


def save_config(cfg: BaseModel, path: str | Path, *, header: str = "") -> None:
    """Write a config as YAML (readable and reloadable), after an optional comment header."""
    from .artifacts import atomic_write_text

    from .secrets import redact

    # A key typed into an option (not an environment variable) is never written.
    text = yaml.safe_dump(redact(cfg.model_dump(mode="json")), sort_keys=False)
    atomic_write_text(path, header + text)
