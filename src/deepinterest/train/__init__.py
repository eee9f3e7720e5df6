"""Trainers: SFT and GRPO of generative backbones, and the SASRec baseline."""
