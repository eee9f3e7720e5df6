"""build_encoder dispatches through the ``deepinterest.encoders`` entry points."""

from __future__ import annotations

import subprocess
import sys

import pytest

from deepinterest.encoders import build_encoder
from deepinterest.encoders.base import MINILM
from deepinterest.encoders.hf import MeanPoolEncoder
from deepinterest.encoders.sentence import SentenceTransformerEncoder
from deepinterest.errors import DeepInterestError


def test_kinds_pick_the_registered_classes(tmp_path):
    # Construction is lazy (no model is loaded), so any name will do here.
    assert isinstance(build_encoder(MINILM), SentenceTransformerEncoder)
    assert isinstance(build_encoder(str(tmp_path)), MeanPoolEncoder)  # no modules.json: hf
    (tmp_path / "modules.json").write_text("[]")
    assert isinstance(build_encoder(str(tmp_path)), SentenceTransformerEncoder)
    enc = build_encoder(MINILM, kind="hf", batch_size=3, normalize=False)
    assert isinstance(enc, MeanPoolEncoder) and (enc.batch_size, enc.normalize) == (3, False)
    assert isinstance(build_encoder("x", kind="sentence-transformers"), SentenceTransformerEncoder)


def test_unknown_kind_lists_the_registered_ones():
    with pytest.raises(DeepInterestError, match="unknown encoder kind 'nope'; use auto or a "
                       "registered encoder: hf, sentence-transformers"):
        build_encoder(kind="nope")


def test_the_shared_base_imports_no_encoder():
    code = ("import sys, deepinterest.encoders; "
            "print(sorted(m for m in sys.modules if m.startswith('deepinterest.encoders.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "sentence" not in out.stdout and ".hf" not in out.stdout, out.stdout
