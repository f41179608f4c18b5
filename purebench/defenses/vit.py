"""Vision-transformer pieces shared by the token-based purifiers (AToP's MAE, IMPure's RIAE)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from purebench.errors import PurebenchError


def sincos_position_embedding(grid: int, dim: int, columns_first: bool = False) -> torch.Tensor:
    """Fixed 2-D sine-cosine embedding (grid*grid, dim), positions row-major: half the channels encode
    rows, half columns (rows first; ``columns_first``: the column coordinate in the first half, as MAE's
    ``get_2d_sincos_pos_embed``, whose meshgrid puts w first)."""
    if dim % 4:
        raise ValueError(f"embedding width {dim} must be divisible by 4")
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim // 4))
    rows, cols = torch.meshgrid(
        torch.arange(grid, dtype=torch.float64), torch.arange(grid, dtype=torch.float64), indexing="ij"
    )
    parts = []
    for coord in (cols.flatten(), rows.flatten()) if columns_first else (rows.flatten(), cols.flatten()):
        angles = coord[:, None] * omega[None]
        parts += [angles.sin(), angles.cos()]
    return torch.cat(parts, dim=1).float()


def transformer(dim: int, depth: int, heads: int, eps: float = 1e-5) -> nn.TransformerEncoder:
    """Pre-norm transformer blocks (GELU MLP of 4x width, no dropout), batch first; ``eps`` of their
    LayerNorms (timm's ViT blocks as MAE builds them: 1e-6)."""
    layer = nn.TransformerEncoderLayer(
        dim, heads, 4 * dim, dropout=0.0, activation="gelu", layer_norm_eps=eps, batch_first=True, norm_first=True
    )
    return nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)


def patchify(x: torch.Tensor, patch_size: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, L, C p^2), patches in row-major order."""
    return F.unfold(x, patch_size, stride=patch_size).transpose(1, 2)


def unpatchify(patches: torch.Tensor, patch_size: int, size: tuple[int, int]) -> torch.Tensor:
    """Inverse of :func:`patchify`."""
    return F.fold(patches.transpose(1, 2), size, patch_size, stride=patch_size)


def to_image(prediction: torch.Tensor, training: bool) -> torch.Tensor:
    """Pixels clamped to [0, 1]; while training the clamp passes gradients straight through, so
    predictions that start outside the range are pulled back instead of going silent."""
    clamped = prediction.clamp(0, 1)
    return prediction + (clamped - prediction).detach() if training else clamped


class PatchAutoencoder(nn.Module):
    """Linear patch embedding with fixed 2-D sin-cos positions, a transformer encoder, a learned mask
    token and a transformer decoder whose head predicts each patch's pixels (MAE-style, He et al.)."""

    def __init__(
        self, image_size: int, patch_size: int, dim: int, depth: int, heads: int,
        decoder_dim: int, decoder_depth: int, decoder_heads: int, norm_eps: float = 1e-5,
    ) -> None:  # fmt: skip
        super().__init__()
        if image_size % patch_size:
            raise PurebenchError(f"image size {image_size} is not a multiple of the patch size {patch_size}.")
        self.patch_size, self.grid = patch_size, image_size // patch_size
        patch_dim = 3 * patch_size**2
        self.embed = nn.Linear(patch_dim, dim)
        self.register_buffer("pos", sincos_position_embedding(self.grid, dim), persistent=False)
        self.register_buffer("decoder_pos", sincos_position_embedding(self.grid, decoder_dim), persistent=False)
        self.encoder, self.encoder_norm = transformer(dim, depth, heads, norm_eps), nn.LayerNorm(dim, norm_eps)
        self.to_decoder = nn.Linear(dim, decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_dim))
        nn.init.normal_(self.mask_token, std=0.02)
        self.decoder = transformer(decoder_dim, decoder_depth, decoder_heads, norm_eps)
        self.decoder_norm = nn.LayerNorm(decoder_dim, norm_eps)
        self.head = nn.Linear(decoder_dim, patch_dim)
