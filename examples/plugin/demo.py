"""The example plugin at work, once installed next to deepinterest:

    pip install ./examples/plugin && python examples/plugin/demo.py [WORKDIR]

Tokenizes the embedded dataset with the plugin's product quantizer (``pq``)
and scores completions with its reward (``position-match``), both found by
name through their entry points. Writes into WORKDIR (default: a temporary
folder).
"""

import json
import sys
import tempfile
from pathlib import Path

import deepinterest as di

print("quantizers:", ", ".join(sorted(di.available("quantizers"))))
print("rewards:", ", ".join(sorted(di.available("rewards"))))

with tempfile.TemporaryDirectory() as tmp:
    run = Path(sys.argv[1] if len(sys.argv) > 1 else tmp)
    dataset = di.prepare_data("default", run / "dataset")
    cfg = di.RunConfig()
    # pq's levels are independent slices, so there is no residual to balance the last one on
    cfg.tokenize = cfg.tokenize.model_copy(update={
        "quantizer": "pq", "levels": 3, "codebook_size": 16, "balanced_last_level": False})
    sids = di.tokenize_items(dataset.path, run / "sids", cfg, progress=False)
    stats = json.loads((sids.path / "stats.json").read_text(encoding="utf-8"))
    print("pq SIDs:", {key: stats[key] for key in ("items", "unique_sids", "relative_mse")})

    reward = di.create("rewards", "position-match", catalog=sids.path)
    target = reward.index.sids[0]
    near = (target[0], target[1], (target[2] + 1) % 16, target[3])  # last level differs
    far = tuple((code + 1) % 16 for code in target[:3]) + (target[3],)
    scores = reward(["prompt"] * 3, [list(target), list(near), list(far)], target=[0, 0, 0])
    print("position-match of the target's SID, one level off, all levels off:", scores)
