"""Evaluation: metrics (:mod:`.metrics`), ranking with a generative backbone
(:mod:`.generative`), the eval stage (:mod:`.stage`) and the most-popular baseline
(:mod:`.baselines`). The evaluation protocol is in docs/data.md."""
