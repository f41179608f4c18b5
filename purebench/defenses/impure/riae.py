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
Also as the code: the sin-cos positions are a (2g x 2g) table (column coordinate in the first half
of the channels; MAE's get_2d_sincos_pos_embed) from which a g x g window is read, centred at test
and at a random offset per image in training (get_index_pos: positional jitter); the head token's
position is the table's zero class slot; LayerNorm eps 1e-6; xavier-uniform linears (the patch
embedding too), zero biases, N(0, 0.02) tokens (initialize_weights).

``base="interpolation"`` (not in the paper; for CPU scale): the RIAE predicts a zero-initialised
residual on top of the floor's rebuild of each subset from the other subsets
(:func:`fill_each_from_others`, as ``defense=impure_floor``), so a subset's base uses none of its
own pixels and training starts at the floor instead of at blurry means.
"""

from __future__ import annotations

import torch
from torch import nn

from purebench.defenses.blur_ops import fill_each_from_others
from purebench.defenses.vit import PatchAutoencoder, patchify, sincos_position_embedding, to_image, unpatchify
from purebench.errors import PurebenchError
from purebench.seeding import rand_like, randn_like

DIVISIONS = ("random", "uniform")
MASKINGS = ("occlusion", "image_noise", "feature_noise", "image_feature_noise")
BASES = ("none", "interpolation")
NORM_EPS = 1e-6  # the code's norm_layer=partial(nn.LayerNorm, eps=1e-6)
NOISE_STEPS = 1000
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def noise_level(t: torch.Tensor) -> torch.Tensor:
    """abar_t of the linear DDPM schedule (betas linspace(1e-4, 0.02, 1000); authors' code, NOTES.md)."""
    betas = torch.linspace(1e-4, 0.02, NOISE_STEPS, dtype=torch.float64)
    return torch.cumprod(1 - betas, 0).to(torch.float32)[t.long()]


class RIAE(PatchAutoencoder):
    def __init__(
        self, image_size: int, patch_size: int, subsets: int, dim: int, depth: int, heads: int,
        decoder_dim: int, decoder_depth: int, decoder_heads: int, out_indices: list[int], base: str = "none",
        base_sigma: float = 0.75,
    ) -> None:  # fmt: skip
        super().__init__(image_size, patch_size, dim, depth, heads, decoder_dim, decoder_depth, decoder_heads, NORM_EPS)
        if base not in BASES:
            raise PurebenchError(f"defense.model.base must be one of {', '.join(BASES)}, got '{base}'.")
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
        self.base, self.base_sigma = base, base_sigma
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.fusion = nn.ModuleList(nn.Linear(dim, dim) for _ in self.out_indices)
        self.fusion_weights = nn.Parameter(torch.zeros(len(self.out_indices) + 1))
        self.decoder_embed_norm = nn.LayerNorm(decoder_dim, NORM_EPS)
        self.head_embed = nn.Linear(dim * (subsets - 1), decoder_dim)  # head token position: zero (code)
        self.final_conv = nn.Conv2d(3, 3, 3, padding=1)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        for name, width in (("pos_table", dim), ("decoder_pos_table", decoder_dim)):  # code: PatchEmbed(img_size*2)
            table = sincos_position_embedding(2 * self.grid, width, columns_first=True)
            self.register_buffer(name, table, persistent=False)
        self._init_weights()

    def _init_weights(self) -> None:
        """The code's initialize_weights: xavier-uniform linears (the patch embedding as a flattened
        convolution: the same fan-in and fan-out), zero biases, N(0, 0.02) tokens; the attention's
        packed in-projection is xavier-uniform over (3D, D) with zero bias by PyTorch's own init, as
        timm's qkv linear. With a base, the head and the final conv's bias start at zero, so the
        residual does and training starts at the floor."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        for token in (self.cls_token, self.mask_token):
            nn.init.normal_(token, std=0.02)
        if self.base != "none":
            for tensor in (self.head.weight, self.head.bias, self.final_conv.bias):
                nn.init.zeros_(tensor)

    def positions(self, b: int, device: torch.device) -> torch.Tensor:
        """(B, g*g) rows of the (2g x 2g) position tables for the image's g x g patches (code: get_index_pos):
        the centred window at test, a random window per image in training (positional jitter)."""
        g, span = self.grid, self.grid + 1  # offsets 0..g in each direction
        if self.training:
            offsets = (rand_like(torch.empty(b, 2, device=device)) * span).floor().long()
        else:
            offsets = torch.full((b, 2), span // 2, device=device)
        steps = torch.arange(g, device=device)
        rows = steps.view(1, g, 1) + offsets[:, 0].view(b, 1, 1)
        cols = steps.view(1, 1, g) + offsets[:, 1].view(b, 1, 1)
        return (rows * 2 * g + cols).view(b, g * g)

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

    def encode(
        self, x_norm: torch.Tensor, subsets: torch.Tensor, positions: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Each subset encoded alone (sequences of its class token + L patch tokens, no cross-subset attention):
        patch features (B, S, L, D) and class tokens (B, S, D), both from the fused encoder output."""
        if positions is None:
            positions = self.positions(x_norm.shape[0], x_norm.device)
        tokens = self.embed(patchify(x_norm, self.patch_size)) + self.pos_table[positions]
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
                t_feature: torch.Tensor | None = None, positions: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
        """Purified image in [0, 1] (see :meth:`predict`)."""
        predicted = self.predict(x, subsets, masking, t_image, t_feature, positions)
        return to_image(predicted * self.std + self.mean, self.training)

    def predict(self, x: torch.Tensor, subsets: torch.Tensor, masking: str, t_image: torch.Tensor | None = None,
                t_feature: torch.Tensor | None = None, positions: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
        """The reconstruction in ImageNet-normalised units, unclamped (the code's ``pred``, on which its L1 is
        taken). ``t_image`` (B,) and ``t_feature`` (B,) or (B, S) (one step per subset, as the code's
        per-chunk draw) are the noise steps of the masking; ``positions`` (B, g*g) the rows of the position
        tables (default :meth:`positions`)."""
        if masking not in MASKINGS:
            raise PurebenchError(f"defense.masking must be one of {', '.join(MASKINGS)}, got '{masking}'.")
        b, s, length = subsets.shape
        n = s * length
        if positions is None:
            positions = self.positions(b, x.device)
        x_norm = self.normalise(x)
        clean, cls = self.encode(x_norm, subsets, positions)
        encoded = self.embed_for_decoder(clean)  # (B, S, L, Dd)
        if masking != "occlusion":  # the information each subset contributes to its own reconstruction
            own = encoded
            if "image" in masking:  # noise in normalised units (code: pre_norm)
                abar = noise_level(t_image).to(x.device).view(-1, 1, 1, 1)
                noised = abar.sqrt() * x_norm + (1 - abar).sqrt() * randn_like(x)
                own = self.embed_for_decoder(self.encode(noised, subsets, positions)[0])
            if "feature" in masking:  # after the decoder embedding and its norm (code)
                abar = noise_level(t_feature).to(x.device).view(b, -1, 1, 1)
                own = abar.sqrt() * own + (1 - abar).sqrt() * randn_like(own)
        dim = encoded.shape[-1]
        index = subsets.reshape(b, n, 1).expand(-1, -1, dim)
        base = torch.zeros(b, n, dim, device=x.device, dtype=encoded.dtype).scatter(
            1, index, encoded.reshape(b, n, dim)
        )
        decoder_pos = self.decoder_pos_table[positions]
        inputs, heads = [], []
        for i in range(s):  # decoder pass i: subset i hidden (mask token) or replaced by its noised information
            hidden = self.mask_token.expand(b, length, dim) if masking == "occlusion" else own[:, i]
            inputs.append(base.scatter(1, subsets[:, i, :, None].expand(-1, -1, dim), hidden) + decoder_pos)
            others = torch.cat([cls[:, j] for j in range(s) if j != i], dim=-1)  # the other subsets' class tokens
            heads.append(self.head_embed(others)[:, None])
        decoded = self.decoder(torch.cat([torch.cat(heads), torch.cat(inputs)], 1))[:, 1:]  # drop the head token
        decoded = self.head(self.decoder_norm(decoded)).view(s, b, n, -1)
        out = torch.zeros(b, n, decoded.shape[-1], device=x.device, dtype=decoded.dtype)
        for i in range(s):  # keep from pass i only the patches of subset i
            rows = subsets[:, i, :, None].expand(-1, -1, decoded.shape[-1])
            out = out.scatter(1, rows, decoded[i].gather(1, rows))
        predicted = self.final_conv(unpatchify(out, self.patch_size, tuple(x.shape[-2:])))  # normalised units
        if self.base == "none":
            return predicted
        return self.normalise(self.fill_from_others(x, subsets)) + predicted  # the residual on the floor's fill

    def fill_from_others(self, x: torch.Tensor, subsets: torch.Tensor) -> torch.Tensor:
        """Each subset's pixels interpolated from the other subsets' (the impure_floor rebuild, any division)."""
        b, s, length = subsets.shape
        ids = torch.arange(s, device=x.device).view(1, s, 1).expand(b, -1, length).reshape(b, -1)
        region = torch.zeros(b, s * length, device=x.device, dtype=torch.long).scatter(1, subsets.reshape(b, -1), ids)
        g, p = self.grid, self.patch_size
        region = region.view(b, 1, g, g).repeat_interleave(p, 2).repeat_interleave(p, 3)
        return fill_each_from_others(x, region, s, self.base_sigma)
