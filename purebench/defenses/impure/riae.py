"""Regional Intersection AutoEncoder (IMPure, Sec. 3.2.1) and its information masking (Sec. 5.1).

The patches of an image are split into S disjoint subsets. Each subset is encoded on its own by
a shared transformer encoder, with its own class token (no attention across subsets, so a
perturbation in one subset never reaches another's features). For each subset i the decoder
receives every patch position: the features of the other subsets in place, subset i replaced by
the mask token (occlusion) or by a noised version of its own information (image and/or feature
noise, DDPM-style x_t = sqrt(abar_t) x + sqrt(1 - abar_t) eps with betas linspace(1e-4, 0.02,
1000)), and predicts subset i's pixels. The purified image combines the S predictions.

As the authors' code (recon_model/MAE/RCMMFFDMAE.py; NOTES.md): pixels are ImageNet-normalised
inside the model and the image noise is added in those units; the encoder output is a fusion of
several blocks' outputs (``out_indices``, each projected, plus the last block, softmax-weighted,
then LayerNorm); the decoder input of pass i is prepended with a head token made from the
other subsets' class tokens (concatenated, projected); feature noise acts after the decoder
embedding and its LayerNorm; and a final 3x3 convolution runs on the unpatchified prediction.
That convolution mixes a 1-pixel border across neighbouring patches, so a subset's own pixels
reach the border pixels of its reconstruction through its neighbours' predictions (as in the code).
"""

from __future__ import annotations

import torch
from torch import nn

from purebench.defenses.vit import PatchAutoencoder, patchify, to_image, unpatchify
from purebench.errors import PurebenchError
from purebench.seeding import rand_like, randn_like

DIVISIONS = ("random", "uniform")
MASKINGS = ("occlusion", "image_noise", "feature_noise", "image_feature_noise")
NOISE_STEPS = 1000
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def noise_level(t: torch.Tensor) -> torch.Tensor:
    """abar_t of the linear DDPM schedule (betas linspace(1e-4, 0.02, 1000); authors' code, NOTES.md)."""
    betas = torch.linspace(1e-4, 0.02, NOISE_STEPS, dtype=torch.float64)
    return torch.cumprod(1 - betas, 0).to(torch.float32)[t.long()]


class RIAE(PatchAutoencoder):
    def __init__(
        self, image_size: int, patch_size: int, subsets: int, dim: int, depth: int, heads: int,
        decoder_dim: int, decoder_depth: int, decoder_heads: int, out_indices: list[int],
    ) -> None:  # fmt: skip
        super().__init__(image_size, patch_size, dim, depth, heads, decoder_dim, decoder_depth, decoder_heads)
        if self.grid**2 % subsets:
            raise PurebenchError(f"{self.grid**2} patches do not split into {subsets} equal subsets.")
        if subsets < 2:
            raise PurebenchError(
                f"the RIAE rebuilds each subset from the others: defense.model.subsets >= 2, got {subsets}."
            )
        if any(not 0 <= i < depth - 1 for i in out_indices):
            raise PurebenchError(
                f"defense.model.out_indices must name encoder blocks 0..{depth - 2}, got {out_indices}."
            )
        self.subsets, self.out_indices = subsets, list(out_indices)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        nn.init.normal_(self.cls_token, std=0.02)
        self.fusion = nn.ModuleList(nn.Linear(dim, dim) for _ in self.out_indices)
        self.fusion_weights = nn.Parameter(torch.zeros(len(self.out_indices) + 1))
        self.decoder_embed_norm = nn.LayerNorm(decoder_dim)
        self.head_embed = nn.Linear(dim * (subsets - 1), decoder_dim)
        self.head_pos = nn.Parameter(torch.zeros(1, 1, decoder_dim))
        self.final_conv = nn.Conv2d(3, 3, 3, padding=1)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    # ---- division ----------------------------------------------------------------------------
    def division(self, x: torch.Tensor, kind: str) -> torch.Tensor:
        """(B, S, L) patch indices of each subset: a per-image shuffle (random) or a fixed lattice (uniform)."""
        b, n, s = x.shape[0], self.grid**2, self.subsets
        if kind == "random":  # shuffle the patches and split them evenly (Sec. 3.2.1)
            order = rand_like(torch.empty(b, n, device=x.device)).argsort(dim=1)
            return order.view(b, s, n // s)
        if kind != "uniform":
            raise PurebenchError(f"defense.division must be one of {', '.join(DIVISIONS)}, got '{kind}'.")
        k = round(s**0.5)
        if k * k != s or self.grid % k:
            raise PurebenchError(
                f"uniform division needs a square number of subsets dividing the grid; use random for S={s}."
            )
        rows, cols = torch.meshgrid(torch.arange(self.grid), torch.arange(self.grid), indexing="ij")
        lattice = ((rows % k) * k + (cols % k)).flatten().to(x.device)  # subset of each patch: a k x k lattice
        return lattice.argsort(stable=True).view(1, s, n // s).expand(b, -1, -1)

    # ---- encoder -----------------------------------------------------------------------------
    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """[0, 1] pixels -> ImageNet-normalised units (the code's pre_norm)."""
        return (x - self.mean) / self.std

    def encode(self, x_norm: torch.Tensor, subsets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each subset encoded alone (sequences of its class token + L patch tokens, no cross-subset attention):
        patch features (B, S, L, D) and class tokens (B, S, D), both from the fused encoder output."""
        tokens = self.embed(patchify(x_norm, self.patch_size)) + self.pos
        b, s, length = subsets.shape
        gathered = tokens.gather(1, subsets.reshape(b, s * length, 1).expand(-1, -1, tokens.shape[-1]))
        h = torch.cat([self.cls_token.expand(b * s, 1, -1), gathered.reshape(b * s, length, -1)], 1)
        levels = []
        for index, block in enumerate(self.encoder.layers):
            h = block(h)
            if index in self.out_indices:
                levels.append(self.fusion[self.out_indices.index(index)](h))
        weights = self.fusion_weights.softmax(0)
        fused = self.encoder_norm(sum(w * level for w, level in zip(weights, [*levels, h], strict=True)))
        fused = fused.view(b, s, length + 1, -1)
        return fused[:, :, 1:], fused[:, :, 0]

    def embed_for_decoder(self, features: torch.Tensor) -> torch.Tensor:
        return self.decoder_embed_norm(self.to_decoder(features))

    # ---- decoder -----------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, subsets: torch.Tensor, masking: str, t_image: torch.Tensor | None = None,
                t_feature: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
        """Purified image in [0, 1]; ``t_image``/``t_feature`` (B,) are the noise steps of the masking."""
        if masking not in MASKINGS:
            raise PurebenchError(f"defense.masking must be one of {', '.join(MASKINGS)}, got '{masking}'.")
        b, s, length = subsets.shape
        n = s * length
        x_norm = self.normalise(x)
        clean, cls = self.encode(x_norm, subsets)
        encoded = self.embed_for_decoder(clean)  # (B, S, L, Dd)
        if masking != "occlusion":  # the information each subset contributes to its own reconstruction
            own = encoded
            if "image" in masking:  # noise in normalised units (code: pre_norm)
                abar = noise_level(t_image).to(x.device).view(-1, 1, 1, 1)
                own = self.embed_for_decoder(
                    self.encode(abar.sqrt() * x_norm + (1 - abar).sqrt() * randn_like(x), subsets)[0]
                )
            if "feature" in masking:  # after the decoder embedding and its norm (code)
                abar = noise_level(t_feature).to(x.device).view(-1, 1, 1, 1)
                own = abar.sqrt() * own + (1 - abar).sqrt() * randn_like(own)
        dim = encoded.shape[-1]
        index = subsets.reshape(b, n, 1).expand(-1, -1, dim)
        base = torch.zeros(b, n, dim, device=x.device, dtype=encoded.dtype).scatter(
            1, index, encoded.reshape(b, n, dim)
        )
        inputs, heads = [], []
        for i in range(s):  # decoder pass i: subset i hidden (mask token) or replaced by its noised information
            hidden = self.mask_token.expand(b, length, dim) if masking == "occlusion" else own[:, i]
            inputs.append(base.scatter(1, subsets[:, i, :, None].expand(-1, -1, dim), hidden) + self.decoder_pos)
            others = torch.cat([cls[:, j] for j in range(s) if j != i], dim=-1)  # the other subsets' class tokens
            heads.append(self.head_embed(others)[:, None] + self.head_pos)
        decoded = self.decoder(torch.cat([torch.cat(heads), torch.cat(inputs)], 1))[:, 1:]  # drop the head token
        decoded = self.head(self.decoder_norm(decoded)).view(s, b, n, -1)
        out = torch.zeros(b, n, decoded.shape[-1], device=x.device, dtype=decoded.dtype)
        for i in range(s):  # keep from pass i only the patches of subset i
            rows = subsets[:, i, :, None].expand(-1, -1, decoded.shape[-1])
            out = out.scatter(1, rows, decoded[i].gather(1, rows))
        predicted = self.final_conv(unpatchify(out, self.patch_size, tuple(x.shape[-2:])))  # normalised units
        return to_image(predicted * self.std + self.mean, self.training)
