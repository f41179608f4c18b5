"""A masked-autoencoder purifier for AToP (Wu et al. 2023, "Denoising masked autoencoders").

The encoder is a ViT that sees only the visible patches of the transformed image (noise plus
masking, as AToP's RT2 produces); the decoder places a learned mask token at every hidden
position, adds fixed 2-D sine-cosine position embeddings and predicts every patch's pixels.
L_mae is the mean squared error on the hidden patches (plus, with weight ``visible_weight``, on
the visible ones, which the noise has corrupted). Width, depth and heads come from the config:
ViT-B-like for a GPU, a few blocks of width 128 on a CPU.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from purebench.defenses.vit import PatchAutoencoder, patchify, to_image, unpatchify


class MAEPurifier(PatchAutoencoder):
    """g(x_t, m) -> x_hat for images of ``image_size`` split into ``patch_size`` patches."""

    adversarial = False  # trained on L_mae alone, no discriminator

    def __init__(
        self, image_size: int, patch_size: int, dim: int, depth: int, heads: int,
        decoder_dim: int, decoder_depth: int, decoder_heads: int, visible_weight: float,
    ) -> None:  # fmt: skip
        super().__init__(image_size, patch_size, dim, depth, heads, decoder_dim, decoder_depth, decoder_heads)
        self.visible_weight = visible_weight

    def patchify(self, x: torch.Tensor) -> torch.Tensor:
        return patchify(x, self.patch_size)

    def visible(self, mask: torch.Tensor) -> torch.Tensor:
        """(B, L) bool: patches the transform kept (m = 1 on the whole patch)."""
        p = self.patch_size
        return F.avg_pool2d(mask[:, :1], p, stride=p).flatten(1) > 0.5

    def forward(self, x_t: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        keep = self.visible(mask)
        n_keep = keep.sum(1)
        if not bool((n_keep == n_keep[0]).all()):
            raise ValueError("every image must keep the same number of patches (AToP masks do)")
        tokens = self.embed(self.patchify(x_t)) + self.pos
        b, length, _ = tokens.shape
        kept_index = keep.float().argsort(dim=1, descending=True, stable=True)[:, : int(n_keep[0])]
        encoded = self.encoder_norm(
            self.encoder(tokens.gather(1, kept_index[..., None].expand(-1, -1, tokens.shape[-1])))
        )
        full = self.mask_token.expand(b, length, -1).clone()
        full = full.scatter(1, kept_index[..., None].expand(-1, -1, full.shape[-1]), self.to_decoder(encoded))
        decoded = self.decoder_norm(self.decoder(full + self.decoder_pos))
        return to_image(unpatchify(self.head(decoded), self.patch_size, tuple(x_t.shape[-2:])), self.training)

    def reconstruction_loss(self, prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """L_mae: MSE on hidden patches (+ visible_weight x MSE on visible ones), mean over images."""
        error = (self.patchify(prediction) - self.patchify(target)).pow(2).mean(-1)
        hidden = (~self.visible(mask)).float()
        per_image = (error * hidden).sum(1) / hidden.sum(1).clamp_min(1)
        if self.visible_weight:
            per_image = per_image + self.visible_weight * (error * (1 - hidden)).sum(1) / (1 - hidden).sum(1).clamp_min(
                1
            )
        return per_image.mean()
