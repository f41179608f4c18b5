"""The authors' RIAE weights (NoWindButRain/IMPure, recon_model/MAE/RCMMFFDMAE.py) as a purebench state dict.

Their model is timm's ViT pieces (``PatchEmbed``, ``Block``) around MAE's encoder and decoder; the
mapping renames each tensor to purebench's :class:`~purebench.defenses.impure.riae.RIAE` and
reshapes three: the patch-embedding convolution becomes the linear embedding (flattened in the
(C, p, p) order of :func:`~purebench.defenses.vit.patchify`), ``decoder_pred``'s outputs are
reordered from the code's (p, p, C) patch layout (its ``unpatchify``) to purebench's (C, p, p), and
``proj_weights`` (k+1, 1, 1, 1) becomes the 1-D fusion weights. The fixed tables (``pos_embed``,
``decoder_pos_embed``, the noise schedule) are not weights: purebench computes them.
"""

from __future__ import annotations

import re

import torch

SKIPPED = ("pos_embed", "decoder_pos_embed", "sqrt_alphas_cumprod", "sqrt_one_minus_alphas_cumprod")
# timm Block -> nn.TransformerEncoderLayer (norm_first: x + attn(norm1(x)), x + mlp(norm2(x)), as timm)
_BLOCK = {
    "norm1": "norm1", "attn.qkv.weight": "self_attn.in_proj_weight", "attn.qkv.bias": "self_attn.in_proj_bias",
    "attn.proj": "self_attn.out_proj", "norm2": "norm2", "mlp.fc1": "linear1", "mlp.fc2": "linear2",
}  # fmt: skip
_TOP = {
    "patch_embed.proj": "embed", "cls_token": "cls_token", "norm": "encoder_norm", "proj_layers": "fusion",
    "proj_weights": "fusion_weights", "decoder_head_embed": "head_embed", "decoder_embed_norm": "decoder_embed_norm",
    "decoder_embed": "to_decoder", "mask_token": "mask_token", "decoder_norm": "decoder_norm",
    "decoder_pred": "head", "decoder_rb1": "final_conv",
}  # fmt: skip


def _rename(name: str) -> str:
    block = re.fullmatch(r"(blocks|decoder_blocks)\.(\d+)\.(.+)", name)
    if block:
        stack, index, rest = block.groups()
        for theirs, ours in _BLOCK.items():
            if rest == theirs or rest.startswith(theirs + "."):
                return f"{'encoder' if stack == 'blocks' else 'decoder'}.layers.{index}.{ours}{rest[len(theirs) :]}"
    for theirs, ours in sorted(_TOP.items(), key=lambda item: -len(item[0])):  # longest prefix first
        if name == theirs or name.startswith(theirs + "."):
            return ours + name[len(theirs) :]
    raise KeyError(f"no purebench counterpart for the authors' tensor '{name}'")


def riae_state_from_authors(state: dict[str, torch.Tensor], patch_size: int) -> dict[str, torch.Tensor]:
    """purebench RIAE state dict from the authors' ``model`` state dict (their ``checkpoint['model']``)."""
    out = {}
    for name, tensor in state.items():
        if name in SKIPPED or name.startswith("hgds."):  # fixed tables; the perceptual networks of training
            continue
        ours = _rename(name)
        if name == "patch_embed.proj.weight":  # conv (D, C, p, p) -> linear on unfold's (C, p, p) order
            tensor = tensor.reshape(tensor.shape[0], -1)
        elif name.startswith("decoder_pred."):  # outputs (p, p, C) -> (C, p, p)
            p = patch_size
            tensor = tensor.reshape(p, p, 3, *tensor.shape[1:]).movedim(2, 0).reshape(tensor.shape)
        elif name == "proj_weights":
            tensor = tensor.reshape(-1)
        out[ours] = tensor
    return out
