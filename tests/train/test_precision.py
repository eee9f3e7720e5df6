"""precision = "auto": bf16 only where the hardware computes it."""

import torch

from deepinterest.train import precision


def test_auto_follows_the_cpu_flags(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx2", "avx512_bf16"}))
    assert precision.resolve_precision("auto", cpu) == "bf16"
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx2", "avx512f"}))
    assert precision.resolve_precision("auto", cpu) == "fp32"
    assert precision.resolve_precision("bf16", cpu) == "bf16"  # an explicit choice stands
    assert precision.resolve_precision("fp32", cpu) == "fp32"


def test_cpu_flags_reads_proc_cpuinfo_or_nothing():
    flags = precision.cpu_flags()
    assert isinstance(flags, frozenset)
    try:
        text = open("/proc/cpuinfo", encoding="utf-8").read()
    except OSError:
        assert flags == frozenset()
    else:
        assert ("avx512_bf16" in flags) == (" avx512_bf16" in text)
