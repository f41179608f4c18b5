"""DeepFill v2 (Yu et al. 2019) inpainting GAN, the purifier of AToP's GAN variant.

Coarse-to-fine generator of gated convolutions (coarse stage, then a refinement stage with a
dilated-convolution branch and a contextual-attention branch) and an SN-PatchGAN discriminator.
Module names, channel plan and the 5-channel input [masked image, ones, hole mask] follow the
public PyTorch DeepFill v2 port (nipponjo/deepfillv2-pytorch, ``networks.py``), so with
``cnum=48`` its ``states_pt_places2.pth`` generator loads by path (its ``G`` entry). ``cnum`` sets
the width: 48 is the paper size, a smaller one trains on a CPU. Images are in [-1, 1] inside
the generator; hole = 1 - m with AToP's mask m (1 keeps a pixel).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class GatedConv(nn.Module):
    """act(features) * sigmoid(gate) from one convolution with 2x channels; a plain conv for RGB outputs."""

    def __init__(
        self, cin: int, cout: int, kernel: int, stride: int = 1, dilation: int = 1, activation: str | None = "elu"
    ) -> None:
        super().__init__()
        self.gated = cout != 3 and activation is not None
        self.activation = {"elu": F.elu, "relu": F.relu, None: None}[activation]
        self.conv = nn.Conv2d(
            cin, 2 * cout if self.gated else cout, kernel, stride, dilation * (kernel - 1) // 2, dilation
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        if not self.gated:
            return out
        features, gate = out.chunk(2, dim=1)
        return self.activation(features) * torch.sigmoid(gate)


class GatedUpConv(nn.Module):
    """Nearest x2 upsampling, then a gated 3x3 convolution."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = GatedConv(cin, cout, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class DownBlock(nn.Module):
    def __init__(self, cin: int, cout: int, hidden: int | None = None) -> None:
        super().__init__()
        hidden = hidden or cout
        self.conv1_downsample, self.conv2 = GatedConv(cin, hidden, 3, stride=2), GatedConv(hidden, cout, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.conv1_downsample(x))


class UpBlock(nn.Module):
    def __init__(self, cin: int, cout: int, hidden: int | None = None) -> None:
        super().__init__()
        hidden = hidden or cout
        self.conv1_upsample, self.conv2 = GatedUpConv(cin, hidden), GatedConv(hidden, cout, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.conv1_upsample(x))


class CoarseGenerator(nn.Module):
    def __init__(self, cin: int, c: int) -> None:
        super().__init__()
        self.conv1 = GatedConv(cin, c // 2, 5)
        self.down_block1, self.down_block2 = DownBlock(c // 2, c), DownBlock(c, 2 * c)
        self.conv_bn1 = GatedConv(2 * c, 2 * c, 3)
        self.conv_bn2, self.conv_bn3 = GatedConv(2 * c, 2 * c, 3, dilation=2), GatedConv(2 * c, 2 * c, 3, dilation=4)
        self.conv_bn4, self.conv_bn5 = GatedConv(2 * c, 2 * c, 3, dilation=8), GatedConv(2 * c, 2 * c, 3, dilation=16)
        self.conv_bn6, self.conv_bn7 = GatedConv(2 * c, 2 * c, 3), GatedConv(2 * c, 2 * c, 3)
        self.up_block1, self.up_block2 = UpBlock(2 * c, c), UpBlock(c, c // 4, hidden=c // 2)
        self.conv_to_rgb = GatedConv(c // 4, 3, 3, activation=None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.down_block2(self.down_block1(self.conv1(x)))
        for layer in (self.conv_bn1, self.conv_bn2, self.conv_bn3, self.conv_bn4, self.conv_bn5, self.conv_bn6):
            x = layer(x)
        x = self.up_block2(self.up_block1(self.conv_bn7(x)))
        return torch.tanh(self.conv_to_rgb(x))


class ContextualAttention(nn.Module):
    """Attend from every foreground feature to valid background patches (Yu et al. 2018, Sec. 4.1).

    Matching runs at half the feature resolution on 3x3 L2-normalised background patches; fused
    scores (two passes of an identity 3x3 kernel) go through a softmax scaled by 10 over the
    patches whose mask window is entirely known; the output pastes the matching 4x4 raw patches
    back by transposed convolution. One image at a time: the patches of an image are its kernels,
    and each image uses its own mask.
    """

    def __init__(self, rate: int = 2, softmax_scale: float = 10.0) -> None:
        super().__init__()
        self.rate, self.softmax_scale = rate, softmax_scale
        self.register_buffer("fuse_weight", torch.eye(3).view(1, 1, 3, 3))

    def _fuse(self, score: torch.Tensor, fh: int, fw: int, bh: int, bw: int) -> torch.Tensor:
        """Smooth scores along neighbouring (background, foreground) pairs, first along w, then along h."""
        s = F.conv2d(score.reshape(1, 1, bh * bw, fh * fw), self.fuse_weight, padding=1)
        s = s.view(1, bh, bw, fh, fw).permute(0, 2, 1, 4, 3).reshape(1, 1, bh * bw, fh * fw)
        s = F.conv2d(s, self.fuse_weight, padding=1)
        return s.view(1, bw, bh, fw, fh).permute(0, 2, 1, 4, 3).reshape(1, bh * bw, fh, fw)

    def forward(self, features: torch.Tensor, hole: torch.Tensor) -> torch.Tensor:
        rate, channels = self.rate, features.shape[1]
        raw = F.unfold(features, 2 * rate, stride=rate, padding=1)  # (B, C*16, L): patches pasted back
        small = F.interpolate(features, scale_factor=1 / rate, mode="nearest")
        bh, bw = small.shape[-2:]
        hole_small = F.interpolate(hole, size=(bh, bw), mode="nearest")
        valid = (F.unfold(hole_small, 3, padding=1).mean(1) == 0).float()  # (B, L): fully known windows
        outputs = []
        for i in range(features.shape[0]):
            patches = F.unfold(small[i : i + 1], 3, padding=1)[0].t().reshape(-1, channels, 3, 3)
            kernels = patches / patches.flatten(1).norm(dim=1).clamp_min(1e-4).view(-1, 1, 1, 1)
            score = self._fuse(F.conv2d(small[i : i + 1], kernels, padding=1), bh, bw, bh, bw)
            mask = valid[i].view(1, -1, 1, 1)
            attention = F.softmax(score * mask * self.softmax_scale, dim=1) * mask
            raw_kernels = raw[i].t().reshape(-1, channels, 2 * rate, 2 * rate)
            outputs.append(F.conv_transpose2d(attention, raw_kernels, stride=rate, padding=1) / 4.0)
        return torch.cat(outputs)


class FineGenerator(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        # dilated-convolution ("hallucination") branch
        self.conv_conv1 = GatedConv(3, c // 2, 5)
        self.conv_down_block1 = DownBlock(c // 2, c, hidden=c // 2)
        self.conv_down_block2 = DownBlock(c, 2 * c, hidden=c)
        self.conv_conv_bn1 = GatedConv(2 * c, 2 * c, 3)
        self.conv_conv_bn2 = GatedConv(2 * c, 2 * c, 3, dilation=2)
        self.conv_conv_bn3 = GatedConv(2 * c, 2 * c, 3, dilation=4)
        self.conv_conv_bn4 = GatedConv(2 * c, 2 * c, 3, dilation=8)
        self.conv_conv_bn5 = GatedConv(2 * c, 2 * c, 3, dilation=16)
        # contextual-attention branch
        self.ca_conv1 = GatedConv(3, c // 2, 5)
        self.ca_down_block1 = DownBlock(c // 2, c, hidden=c // 2)
        self.ca_down_block2 = DownBlock(c, 2 * c)
        self.ca_conv_bn1 = GatedConv(2 * c, 2 * c, 3, activation="relu")
        self.contextual_attention = ContextualAttention()
        self.ca_conv_bn4, self.ca_conv_bn5 = GatedConv(2 * c, 2 * c, 3), GatedConv(2 * c, 2 * c, 3)
        # merge and decode
        self.conv_bn6, self.conv_bn7 = GatedConv(4 * c, 2 * c, 3), GatedConv(2 * c, 2 * c, 3)
        self.up_block1, self.up_block2 = UpBlock(2 * c, c), UpBlock(c, c // 4, hidden=c // 2)
        self.conv_to_rgb = GatedConv(c // 4, 3, 3, activation=None)

    def forward(self, x: torch.Tensor, hole: torch.Tensor) -> torch.Tensor:
        h = self.conv_down_block2(self.conv_down_block1(self.conv_conv1(x)))
        for layer in (
            self.conv_conv_bn1,
            self.conv_conv_bn2,
            self.conv_conv_bn3,
            self.conv_conv_bn4,
            self.conv_conv_bn5,
        ):
            h = layer(h)
        a = self.ca_conv_bn1(self.ca_down_block2(self.ca_down_block1(self.ca_conv1(x))))
        a = self.ca_conv_bn5(self.ca_conv_bn4(self.contextual_attention(a, hole)))
        x = self.conv_bn7(self.conv_bn6(torch.cat([h, a], dim=1)))
        return torch.tanh(self.conv_to_rgb(self.up_block2(self.up_block1(x))))


class DeepFillGenerator(nn.Module):
    """g(x_t, m): the purifier. ``stages`` also returns the coarse output for the L1 loss of training."""

    adversarial = True  # trained with a discriminator (L_df, text before Eq. 9)

    def __init__(self, cnum: int = 48) -> None:
        super().__init__()
        if cnum % 4:
            raise ValueError(f"deepfill cnum must be a multiple of 4, got {cnum}")
        self.stage1, self.stage2 = CoarseGenerator(5, cnum), FineGenerator(cnum)

    @staticmethod
    def generator_input(x_t: torch.Tensor, m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The 5-channel input [masked image in [-1, 1], ones, hole] and the hole mask, as the authors' notebooks
        build it (`torch.cat([batch_incomplete, ones_x, ones_x*mask], axis=1)`); separate so it can be compared."""
        hole = 1 - m[:, :1]
        ones = torch.ones_like(hole)
        return torch.cat([(x_t * 2 - 1) * (1 - hole), ones, ones * hole], dim=1), hole

    def stages(self, x_t: torch.Tensor, m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Coarse and refined images in [0, 1] (uncomposited: AToP uses g's whole output, Eq. 2-4)."""
        if x_t.shape[-1] % 8 or x_t.shape[-2] % 8:
            raise ValueError(f"DeepFill needs image sides divisible by 8, got {tuple(x_t.shape[-2:])}")
        x_in, hole = self.generator_input(x_t, m)
        coarse = self.stage1(x_in)
        refined = self.stage2(coarse * hole + x_in[:, :3] * (1 - hole), hole)
        return (coarse + 1) / 2, (refined + 1) / 2

    def forward(self, x_t: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        return self.stages(x_t, m)[1]


class SpectralNormConv(nn.Conv2d):
    """Conv2d whose weight is divided by its largest singular value (one power iteration per training forward)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, padding: int) -> None:
        super().__init__(cin, cout, kernel, stride, padding)
        self.register_buffer("weight_u", F.normalize(torch.randn(cout, 1), dim=0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.flatten(1)
        u = self.weight_u
        if self.training:
            with torch.no_grad():
                v = F.normalize(w.t() @ u, dim=0)
                u = F.normalize(w @ v, dim=0)
                self.weight_u.copy_(u)
        v = F.normalize(w.t() @ u, dim=0).detach()
        sigma = (u.t() @ w @ v).squeeze()
        return F.conv2d(x, self.weight / sigma, self.bias, self.stride, self.padding)


class DiscriminatorConv(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv_sn = SpectralNormConv(cin, cout, 5, 2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(self.conv_sn(x), 0.2)


class PatchDiscriminator(nn.Module):
    """SN-PatchGAN: six spectrally normalised 5x5 stride-2 convolutions on [image, mask]."""

    def __init__(self, cnum: int = 64) -> None:
        super().__init__()
        widths = [4, cnum, 2 * cnum, 4 * cnum, 4 * cnum, 4 * cnum, 4 * cnum]
        for k in range(6):
            self.add_module(f"conv{k + 1}", DiscriminatorConv(widths[k], widths[k + 1]))

    def forward(self, image: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        x = torch.cat([image * 2 - 1, 1 - m[:, :1]], dim=1)
        for k in range(6):
            x = getattr(self, f"conv{k + 1}")(x)
        return x.flatten(1)
