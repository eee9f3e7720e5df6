"""deepinterest: generative recommendation with LLM-mined deep interests.

The package is a pipeline of stages that meet only through artifact folders on
disk (see ``docs/pipeline.md``):

    dataset -> interests -> sids -> sft checkpoint -> rl checkpoint -> eval

The names below are the public surface; every ``di`` command is one of these
calls:

    import deepinterest as di

    result = di.run("examples/default.toml")      # the whole chain
    model = di.load_recommender("examples/default.toml")
    print(model.recommend("U0001", k=5))

    di.create("quantizers", "rkmeans", levels=3)  # any registered component

Stages one at a time: ``prepare_data``, ``mine_interests``,
``tokenize_items``, ``train_sft``, ``train_rl``, ``train_sasrec``,
``evaluate_run``. Components register through entry points
(``available``, ``create``), so a plugin package adds a miner,
quantizer, backbone or reward without touching this one. Besides the names
in ``__all__``, the contracts a plugin implements are public:
``deepinterest.config``, ``miners.base``, ``encoders.base``,
``tokenizers.base``, ``backbones.base``, ``rewards.base`` (the API reference
documents them); other submodules are internal and may change between
releases.

Heavy optional dependencies (torch, sentence-transformers, faiss, triton,
openai, ...) are imported inside the calls that need them, so ``import
deepinterest`` stays cheap.
"""


# The stage calls, the chain and serving: every name of deepinterest.api's __all__.
from .api import *  # noqa: F401,F403
from .api import __all__ as _api_names
from .artifacts import RunResult, StageResult
from .config import RunConfig, load_config, save_config
from .data.model import Dataset, load_dataset
from .errors import DeepInterestError
from .registry import available, create, kinds
from .version import __version__

__all__ = [
    *_api_names,
    # configs
    "RunConfig", "load_config", "save_config",
    # data
    "Dataset", "load_dataset",
    # components by name
    "kinds", "available", "create",
    # result types and errors
    "StageResult", "RunResult", "DeepInterestError",
    "__version__",
]
