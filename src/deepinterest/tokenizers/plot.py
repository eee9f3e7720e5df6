"""PNG of code usage per level: how evenly each codebook is used.

Each panel shows one level's code counts sorted from most to least used; a
flat profile means balanced codes, a long zero tail means dead codes.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import require


def plot_code_usage(codes: torch.Tensor, codebook_sizes: tuple[int, ...], path: str | Path,
                    *, title: str = "") -> Path:
    matplotlib = require("matplotlib", "plot", "The code-usage plot")
    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    levels = len(codebook_sizes)
    fig, axes = plt.subplots(1, levels, figsize=(4 * levels, 3), squeeze=False)
    for level, (ax, size) in enumerate(zip(axes[0], codebook_sizes)):
        counts = torch.bincount(codes[:, level].cpu(), minlength=size).sort(descending=True)
        used = int((counts.values > 0).sum())
        ax.bar(range(size), counts.values.numpy(), width=1.0, color="#3b6ea8")
        ax.set_title(f"level {level + 1}: {used}/{size} codes used", fontsize=9)
        ax.set_xlabel("code (sorted by count)", fontsize=8)
        ax.set_ylabel("items", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
