"""Regional Intersection AutoEncoder (IMPure, Sec. 3.2.1) and its information masking (Sec. 5.1).

The patches of an image are split into S disjoint subsets. Each subset is encoded on its own by
a shared transformer encoder (no attention across subsets, so a perturbation in one subset never
reaches another's features). For each subset i the decoder receives every patch position: the
features of the other subsets in place, subset i replaced by the mask token (occlusion) or by a
noised version of its own information (image and/or feature noise, DDPM-style
x_t = sqrt(abar_t) x + sqrt(1 - abar_t) eps with betas linspace(1e-4, 0.02, 1000)), and predicts
subset i's pixels. The purified image combines the S predictions, so no patch is rebuilt from
its own clean-through perturbation.
"""

from __future__ import annotations

import torch

from purebench.defenses.vit import PatchAutoencoder, patchify, to_image, unpatchify
from purebench.errors import PurebenchError
from purebench.seeding import rand_like, randn_like

DIVISIONS = ("random", "uniform")
MASKINGS = ("occlusion", "image_noise", "feature_noise", "image_feature_noise")
NOISE_STEPS = 1000


def noise_level(t: torch.Tensor) -> torch.Tensor:
    """abar_t of the linear DDPM schedule (betas linspace(1e-4, 0.02, 1000); authors' code, NOTES.md)."""
    betas = torch.linspace(1e-4, 0.02, NOISE_STEPS, dtype=torch.float64)
    return torch.cumprod(1 - betas, 0).to(torch.float32)[t.long()]


class RIAE(PatchAutoencoder):
    def __init__(
        self, image_size: int, patch_size: int, subsets: int, dim: int, depth: int, heads: int,
        decoder_dim: int, decoder_depth: int, decoder_heads: int,
    ) -> None:  # fmt: skip
        super().__init__(image_size, patch_size, dim, depth, heads, decoder_dim, decoder_depth, decoder_heads)
        if self.grid**2 % subsets:
            raise PurebenchError(f"{self.grid**2} patches do not split into {subsets} equal subsets.")
        self.subsets = subsets

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
    def encode(self, x: torch.Tensor, subsets: torch.Tensor) -> torch.Tensor:
        """(B, S, L, D): each subset encoded alone (sequences of L tokens, no cross-subset attention)."""
        tokens = self.embed(patchify(x, self.patch_size)) + self.pos
        b, s, length = subsets.shape
        gathered = tokens.gather(1, subsets.reshape(b, s * length, 1).expand(-1, -1, tokens.shape[-1]))
        encoded = self.encoder_norm(self.encoder(gathered.reshape(b * s, length, -1)))
        return encoded.view(b, s, length, -1)

    # ---- decoder -----------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, subsets: torch.Tensor, masking: str, t_image: torch.Tensor | None = None,
                t_feature: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
        """Purified image in [0, 1]; ``t_image``/``t_feature`` (B,) are the noise steps of the masking."""
        if masking not in MASKINGS:
            raise PurebenchError(f"defense.masking must be one of {', '.join(MASKINGS)}, got '{masking}'.")
        b, s, length = subsets.shape
        n = s * length
        clean = self.encode(x, subsets)
        encoded = self.to_decoder(clean)  # (B, S, L, Dd)
        if masking != "occlusion":  # the information each subset contributes to its own reconstruction
            source = x
            if "image" in masking:
                abar = noise_level(t_image).to(x.device).view(-1, 1, 1, 1)
                source = (abar.sqrt() * (2 * x - 1) + (1 - abar).sqrt() * randn_like(x) + 1) / 2
            own = self.encode(source, subsets) if "image" in masking else clean
            if "feature" in masking:
                abar = noise_level(t_feature).to(x.device).view(-1, 1, 1, 1)
                own = abar.sqrt() * own + (1 - abar).sqrt() * randn_like(own)
            own = self.to_decoder(own)
        dim = encoded.shape[-1]
        index = subsets.reshape(b, n, 1).expand(-1, -1, dim)
        base = torch.zeros(b, n, dim, device=x.device, dtype=encoded.dtype).scatter(
            1, index, encoded.reshape(b, n, dim)
        )
        inputs = []
        for i in range(s):  # decoder pass i: subset i hidden (mask token) or replaced by its noised information
            hidden = self.mask_token.expand(b, length, dim) if masking == "occlusion" else own[:, i]
            inputs.append(base.scatter(1, subsets[:, i, :, None].expand(-1, -1, dim), hidden))
        decoded = self.head(self.decoder_norm(self.decoder(torch.cat(inputs) + self.decoder_pos)))  # (S*B, N, P)
        decoded = decoded.view(s, b, n, -1)
        out = torch.zeros(b, n, decoded.shape[-1], device=x.device, dtype=decoded.dtype)
        for i in range(s):  # keep from pass i only the patches of subset i
            rows = subsets[:, i, :, None].expand(-1, -1, decoded.shape[-1])
            out = out.scatter(1, rows, decoded[i].gather(1, rows))
        return to_image(unpatchify(out, self.patch_size, tuple(x.shape[-2:])), self.training)
