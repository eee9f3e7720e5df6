"""deepinterest: generative recommendation with LLM-mined deep interests.

The package is a pipeline of stages that meet only through artifact folders on
disk (see ``docs/pipeline.md``)::

    dataset -> interests -> sids -> sft checkpoint -> rl checkpoint -> eval

Heavy optional dependencies (sentence-transformers, faiss, triton, openai, ...)
are imported lazily inside the modules that need them, so ``import
deepinterest`` stays cheap.
"""

from importlib.metadata import PackageNotFoundError, version as _version

try:
    __version__ = _version("deepinterest")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0+local"

__all__ = ["__version__"]
