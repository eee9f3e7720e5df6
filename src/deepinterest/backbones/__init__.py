"""Generative backbones over semantic IDs, constrained decoding, and baselines."""
