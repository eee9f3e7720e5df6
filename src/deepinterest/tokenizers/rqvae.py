"""RQ-VAE: an MLP autoencoder with residual vector quantization of its latent.

    rq = RQVAE(levels=3, codebook_size=256, hidden_dims=(512, 256, 128), latent_dim=32)
    report = rq.fit(vectors, seed=0)    # report.history: one dict per epoch
    codes = rq.encode(vectors)          # [N, 3]
    approx = rq.decode(codes)           # decoder(sum of code embeddings)

The item tokenizer of DeepInterestGR (arXiv 2602.18907: RQ-VAE with 3
levels), as in TIGER and LC-Rec. Design decisions:

- Composition, not flags: :class:`VectorQuantizer` (one codebook) inside
  :class:`ResidualVQ` (levels of them on residuals) inside :class:`RQVAENet`
  (encoder, residual VQ, decoder); :class:`RQVAE` holds the training loop
  and the quantizer contract. Every nearest-code search goes through
  :func:`~deepinterest.tokenizers.kernels.nearest_codeword`.
- Losses (VQ-VAE): reconstruction MSE + per level ``||sg[r] - e||^2 + beta
  ||r - sg[e]||^2`` (beta 0.25); one straight-through estimator on the sum of
  the selected codewords. Residuals subtract the *detached* codewords (as in
  vector-quantize-pytorch), so later levels' commitment terms still train the
  encoder; the forward values equal the inference path exactly, so a code
  chosen in training is the code ``encode`` would choose.
- Codebooks are learned by gradient (Adam), not EMA, and initialised by our
  k-means (k-means++ + Lloyd, 10 iterations) on the first batch's latents,
  level by level on its residuals: random init leaves most codes dead.
- Dead-code restarts: a code unused for ``dead_after`` consecutive steps is
  re-seeded with a random residual from the current batch, and its Adam
  moments are zeroed so the stale momentum does not drag it back.
- Early stopping on the epoch's mean reconstruction loss (relative
  improvement below ``min_delta`` for ``patience`` epochs); the best epoch's
  weights are restored, so the fit report describes the model that is kept.
- Determinism on CPU: weights are initialised under a forked global RNG
  seeded with ``seed`` (the caller's global RNG state is left untouched),
  shuffling and restarts draw from a seeded ``torch.Generator``, and the
  codeword lookup is a one-hot matmul (see ``VectorQuantizer.forward``).
  Measured: two processes with the same seed give identical losses.
- Departure from the paper's setup: the paper fuses a 2560-d Qwen3 text
  embedding with CLIP image features; any [N, D] vectors work here, and the
  defaults (hidden 512-256-128, latent 32, 3 x 256) follow TIGER/LC-Rec.
"""

from __future__ import annotations

import copy
import math
import time
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from ..progress import bar as tqdm

from ..errors import DeepInterestError
from .base import (
    FitReport,
    Quantized,
    as_codes,
    as_vectors,
    code_stats,
    load_quantizer,
    reconstruction_errors,
    save_quantizer,
)
from .kernels import nearest_codeword
from .kmeans import KMeans

KIND = "rqvae"
INIT_KMEANS_ITERS = 10


class VQOutput(NamedTuple):
    """One level: ``codewords`` (selected, with gradient to the codebook), ``codes``, ``loss``."""

    codewords: torch.Tensor
    codes: torch.Tensor
    loss: torch.Tensor


class RVQOutput(NamedTuple):
    """All levels: straight-through ``quantized`` latent, ``codes`` [B, L], summed ``loss``,
    and each level's (detached) input ``inputs``."""

    quantized: torch.Tensor
    codes: torch.Tensor
    loss: torch.Tensor
    inputs: list[torch.Tensor]


class VectorQuantizer(nn.Module):
    """One codebook of ``codebook_size`` vectors of size ``dim``, learned by the VQ-VAE losses."""

    def __init__(self, *, codebook_size: int, dim: int, beta: float = 0.25):
        super().__init__()
        self.beta = beta
        self.codebook = nn.Parameter(torch.zeros(codebook_size, dim))
        # Steps since each code was last selected (training only, not saved).
        idle = torch.zeros(codebook_size, dtype=torch.long)
        self.register_buffer("idle_steps", idle, persistent=False)

    def forward(self, z: torch.Tensor) -> VQOutput:
        codes = nearest_codeword(z.detach(), self.codebook.detach()).indices
        # One-hot matmul, not codebook[codes]: the gather's backward accumulates
        # with threads in a run-dependent order on CPU, so two runs with the same
        # seed drifted apart; the matmul's rows are the codewords exactly.
        one_hot = F.one_hot(codes, self.codebook.shape[0]).to(self.codebook.dtype)
        codewords = one_hot @ self.codebook
        loss = F.mse_loss(codewords, z.detach()) + self.beta * F.mse_loss(z, codewords.detach())
        return VQOutput(codewords, codes, loss)

    @torch.no_grad()
    def initialize(self, z: torch.Tensor, *, seed: int) -> None:
        """Codebook = k-means centroids of ``z`` (duplicated points if ``z`` has too few rows)."""
        size = self.codebook.shape[0]
        kmeans = KMeans(codebook_size=size, max_iter=INIT_KMEANS_ITERS, backend="torch")
        self.codebook.copy_(kmeans.train(z.detach(), seed=seed).centroids)
        self.idle_steps.zero_()

    @torch.no_grad()
    def restart_dead(
        self, z: torch.Tensor, codes: torch.Tensor, *, dead_after: int, generator: torch.Generator
    ) -> torch.Tensor:
        """Re-seed codes idle for ``dead_after`` steps with rows of ``z``; returns their indices."""
        used = torch.bincount(codes, minlength=self.codebook.shape[0]) > 0
        self.idle_steps.add_(1).masked_fill_(used, 0)
        dead = (self.idle_steps >= dead_after).nonzero().squeeze(1)
        if dead.numel():
            rows = torch.randint(z.shape[0], (dead.numel(),), generator=generator).to(z.device)
            self.codebook[dead] = z[rows].detach()
            self.idle_steps[dead] = 0
        return dead


class ResidualVQ(nn.Module):
    """``levels`` vector quantizers, each quantizing what the levels before it left over."""

    def __init__(self, *, codebook_sizes: tuple[int, ...], dim: int, beta: float = 0.25):
        super().__init__()
        self.layers = nn.ModuleList(
            VectorQuantizer(codebook_size=k, dim=dim, beta=beta) for k in codebook_sizes
        )

    def forward(self, z: torch.Tensor) -> RVQOutput:
        residual, total, loss = z, torch.zeros_like(z), z.new_zeros(())
        codes, inputs = [], []
        for layer in self.layers:
            out = layer(residual)
            inputs.append(residual.detach())
            residual = residual - out.codewords.detach()
            total = total + out.codewords.detach()
            codes.append(out.codes)
            loss = loss + out.loss
        # Straight-through: the decoder's gradient reaches the encoder unchanged.
        quantized = z + (total - z).detach()
        return RVQOutput(quantized, torch.stack(codes, dim=1), loss, inputs)

    @torch.no_grad()
    def initialize(self, z: torch.Tensor, *, seed: int) -> None:
        """k-means init of every level on the residuals of ``z`` (one batch of latents)."""
        residual = z.detach()
        for level, layer in enumerate(self.layers):
            layer.initialize(residual, seed=seed * 1_000_003 + level)
            residual = residual - layer(residual).codewords

    def embed(self, codes: torch.Tensor) -> torch.Tensor:
        """Sum of the code embeddings of ``codes`` [N, l] (l <= levels)."""
        return sum(self.layers[level].codebook[codes[:, level]] for level in range(codes.shape[1]))


class RQVAENet(nn.Module):
    """MLP encoder -> residual VQ -> MLP decoder (mirror of the encoder)."""

    def __init__(self, *, input_dim: int, hidden_dims: tuple[int, ...], latent_dim: int,
                 codebook_sizes: tuple[int, ...], beta: float):
        super().__init__()
        self.encoder = _mlp([input_dim, *hidden_dims, latent_dim])
        self.rvq = ResidualVQ(codebook_sizes=codebook_sizes, dim=latent_dim, beta=beta)
        self.decoder = _mlp([latent_dim, *reversed(hidden_dims), input_dim])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, RVQOutput]:
        out = self.rvq(self.encoder(x))
        return self.decoder(out.quantized), out


def _mlp(dims: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:])):
        layers.append(nn.Linear(d_in, d_out))
        if i < len(dims) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class RQVAE:
    """RQ-VAE quantizer (keyword-only configuration; see the module docstring).

    ``codebook_sizes`` overrides ``levels`` x ``codebook_size``. Training:
    Adam (``lr``), ``batch_size``, at most ``epochs`` epochs, early stopping
    after ``patience`` epochs without a relative improvement of ``min_delta``,
    dead codes restarted after ``dead_after`` idle steps.
    """

    def __init__(
        self,
        *,
        levels: int = 3,
        codebook_size: int = 256,
        codebook_sizes: tuple[int, ...] | list[int] | None = None,
        hidden_dims: tuple[int, ...] | list[int] = (512, 256, 128),
        latent_dim: int = 32,
        beta: float = 0.25,
        lr: float = 1e-3,
        batch_size: int = 1024,
        epochs: int = 200,
        patience: int = 10,
        min_delta: float = 1e-3,
        dead_after: int = 20,
    ):
        sizes = (codebook_size,) * levels if codebook_sizes is None else tuple(codebook_sizes)
        sizes = tuple(int(s) for s in sizes)
        if not sizes or batch_size < 1 or epochs < 1:
            raise DeepInterestError("RQVAE needs >= 1 level, batch_size >= 1 and epochs >= 1")
        self.codebook_sizes = sizes
        self.levels = len(sizes)
        self.options = {
            "hidden_dims": [int(d) for d in hidden_dims], "latent_dim": latent_dim,
            "beta": beta, "lr": lr, "batch_size": batch_size, "epochs": epochs,
            "patience": patience, "min_delta": min_delta, "dead_after": dead_after,
        }
        self.net: RQVAENet | None = None
        self.input_dim: int | None = None

    def config(self) -> dict:
        """Constructor arguments (saved with the weights)."""
        return {"codebook_sizes": list(self.codebook_sizes), **self.options}

    def _build(self, input_dim: int, *, seed: int) -> RQVAENet:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = RQVAENet(
                input_dim=input_dim, hidden_dims=tuple(self.options["hidden_dims"]),
                latent_dim=self.options["latent_dim"], codebook_sizes=self.codebook_sizes,
                beta=self.options["beta"],
            )
        self.net, self.input_dim = net, input_dim
        return net

    def fit(self, vectors: torch.Tensor, *, seed: int = 0, progress: bool = False) -> FitReport:
        """Train from scratch on ``vectors``; returns the report of the best epoch's model."""
        vectors = as_vectors(vectors)
        start = time.perf_counter()
        net = self._build(vectors.shape[1], seed=seed).to(vectors.device)
        generator = torch.Generator().manual_seed(seed)
        optimizer = torch.optim.Adam(net.parameters(), lr=self.options["lr"])
        order = torch.randperm(vectors.shape[0], generator=generator)
        first = vectors[order[: self.options["batch_size"]].to(vectors.device)]
        with torch.no_grad():
            net.rvq.initialize(net.encoder(first.to(vectors.device)), seed=seed)
        history = self._train(vectors, net, optimizer, generator, progress=progress)
        net.eval()
        quantized = self.quantize(vectors)
        mse, relative = reconstruction_errors(vectors, quantized.quantized)
        stats = code_stats(quantized.codes, self.codebook_sizes)
        restarts = tuple(
            sum(int(h[f"restarts_{level}"]) for h in history) for level in range(self.levels)
        )
        return FitReport(
            seconds=time.perf_counter() - start, mse=mse, relative_mse=relative,
            usage=stats.usage, perplexity=stats.perplexity, iterations=(len(history),),
            repaired=restarts, history=history,
        )

    def _train(
        self, vectors, net, optimizer, generator, *, progress: bool
    ) -> list[dict[str, float]]:
        opts = self.options
        history: list[dict[str, float]] = []
        best = reference = float("inf")
        best_state, waited = None, 0
        bar = tqdm(range(opts["epochs"]), desc="rq-vae", unit="epoch", disable=not progress)
        for epoch in bar:
            net.train()
            stats = self._epoch(vectors, net, optimizer, generator)
            history.append({"epoch": epoch + 1, **stats})
            bar.set_postfix(recon=f"{stats['reconstruction']:.4g}", vq=f"{stats['vq_loss']:.3g}")
            recon = stats["reconstruction"]
            if not math.isfinite(stats["loss"]):
                raise DeepInterestError(
                    f"RQ-VAE training diverged (loss {stats['loss']} at epoch {epoch + 1}); "
                    f"lower lr (now {opts['lr']}) or check the vectors"
                )
            if recon < best:
                best, best_state = recon, copy.deepcopy(net.state_dict())
            # Patience counts epochs without a *significant* gain over the last significant one.
            if recon < reference * (1 - opts["min_delta"]):
                reference, waited = recon, 0
            else:
                waited += 1
                if waited >= opts["patience"]:
                    break
        net.load_state_dict(best_state)
        return history

    def _epoch(self, vectors, net, optimizer, generator) -> dict[str, float]:
        """One pass over shuffled ``vectors``; returns mean losses and restarts per level."""
        batch_size, dead_after = self.options["batch_size"], self.options["dead_after"]
        order = torch.randperm(vectors.shape[0], generator=generator).to(vectors.device)
        totals = {"loss": 0.0, "reconstruction": 0.0, "vq_loss": 0.0}
        restarts = [0] * self.levels
        batches = 0
        for begin in range(0, vectors.shape[0], batch_size):
            batch = vectors[order[begin : begin + batch_size]]
            reconstruction, out = net(batch)
            recon_loss = F.mse_loss(reconstruction, batch)
            loss = recon_loss + out.loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            for level, layer in enumerate(net.rvq.layers):
                dead = layer.restart_dead(
                    out.inputs[level], out.codes[:, level], dead_after=dead_after,
                    generator=generator,
                )
                _reset_adam_rows(optimizer, layer.codebook, dead)
                restarts[level] += int(dead.numel())
            for key, value in zip(totals, (loss, recon_loss, out.loss)):
                totals[key] += float(value.detach())
            batches += 1
        stats = {key: value / batches for key, value in totals.items()}
        return {**stats, **{f"restarts_{level}": float(n) for level, n in enumerate(restarts)}}

    def _require_net(self) -> RQVAENet:
        if self.net is None:
            raise DeepInterestError("RQVAE is not fitted: call fit(vectors) or load(folder) first")
        return self.net

    @property
    def codebooks(self) -> list[torch.Tensor]:
        """The latent-space codebooks, one [K_l, latent_dim] tensor per level."""
        return [layer.codebook.detach() for layer in self._require_net().rvq.layers]

    @torch.no_grad()
    def quantize(self, vectors: torch.Tensor) -> Quantized:
        """Codes, decoded vectors and the last level's latent input (in ``batch_size`` chunks)."""
        net = self._require_net()
        vectors = as_vectors(vectors)
        was_training = net.training
        net.eval()
        chunks = vectors.split(self.options["batch_size"])
        parts = [self._quantize_chunk(net, chunk) for chunk in chunks]
        net.train(was_training)
        return Quantized(*(torch.cat(p) for p in zip(*parts)))

    def _quantize_chunk(self, net: RQVAENet, chunk: torch.Tensor) -> tuple[torch.Tensor, ...]:
        device = next(net.parameters()).device
        out = net.rvq(net.encoder(chunk.to(device)))
        return out.codes, net.decoder(net.rvq.embed(out.codes)), out.inputs[-1]

    def encode(self, vectors: torch.Tensor) -> torch.Tensor:
        """int64 codes [N, levels] of the encoder's latents."""
        return self.quantize(vectors).codes

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """decoder(sum of the code embeddings); ``codes`` may hold only the first l levels."""
        net = self._require_net()
        device = next(net.parameters()).device
        codes = as_codes(codes, self.codebook_sizes).to(device)
        return net.decoder(net.rvq.embed(codes))

    def save(self, folder: str | Path) -> None:
        """Write ``config.json`` (with ``input_dim``) and the weights as safetensors."""
        net = self._require_net()
        config = {**self.config(), "input_dim": self.input_dim}
        save_quantizer(folder, kind=KIND, config=config, tensors=dict(net.state_dict()))

    @classmethod
    def load(cls, folder: str | Path) -> RQVAE:
        """A trained RQ-VAE from :meth:`save`'s folder (CPU), ready to encode new items."""
        config, tensors = load_quantizer(folder, kind=KIND)
        input_dim = config.pop("input_dim")
        quantizer = cls(**config)
        quantizer._build(input_dim, seed=0).load_state_dict(tensors)
        quantizer.net.eval()
        return quantizer

    def __repr__(self) -> str:
        latent = self.options["latent_dim"]
        return f"RQVAE(codebook_sizes={self.codebook_sizes}, latent_dim={latent})"


def _reset_adam_rows(
    optimizer: torch.optim.Optimizer, param: torch.Tensor, rows: torch.Tensor
) -> None:
    """Zero Adam's moment estimates of ``param``'s restarted ``rows``."""
    state = optimizer.state.get(param, {})
    if rows.numel():
        for key in ("exp_avg", "exp_avg_sq"):
            if key in state:
                state[key][rows] = 0.0
