"""``F.normalize(x, dim=1)`` on CPU without torch's slow channel-norm kernel, bit for bit.

ZeroPur's perceptual regulariser normalises activations over channels at every Adaptive Projection
step. On CPU, ``torch.linalg.vector_norm`` over dim 1 of an NCHW tensor runs a strided scalar loop
(6.6 ms for 64 x 16 x 32 x 32 on two cores; the elementwise formulation below takes 0.4 ms),
which made it the largest cost of the purifier beside the network itself. That kernel accumulates
the squares channel by channel in float and takes the square root in double; the same
accumulation written as elementwise operations gives the same bits, and the backward pass is
torch's own formula for the 2-norm, so purification outputs do not change (tests compare both
directions with ``F.normalize`` bit for bit, so a torch upgrade that changes the kernel fails loudly).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


class _ChannelNorm(torch.autograd.Function):
    """||x||_2 over dim 1 (keepdim): the CPU kernel's accumulation order, torch's 2-norm backward."""

    @staticmethod
    def forward(x: torch.Tensor) -> torch.Tensor:
        squares = x * x
        total = squares[:, 0].clone()
        for c in range(1, x.shape[1]):  # float accumulation in channel order, as the kernel does
            total += squares[:, c]
        return total.double().sqrt().to(x.dtype).unsqueeze(1)

    @staticmethod
    def setup_context(ctx: torch.autograd.function.FunctionCtx, inputs: tuple, output: torch.Tensor) -> None:
        ctx.save_for_backward(inputs[0], output)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> torch.Tensor:
        x, norm = ctx.saved_tensors
        return grad * (x / norm).masked_fill(norm == 0, 0)  # torch's norm_backward for p = 2


def normalize_channels(x: torch.Tensor, eps: float) -> torch.Tensor:
    """``F.normalize(x, dim=1, eps=eps)`` with the same values and gradients; the fast path is taken on
    CPU where it is faster (more pixels per image than channels), torch's kernel elsewhere."""
    if x.device.type != "cpu" or x.dim() != 4 or x.shape[1] > x.shape[-2] * x.shape[-1]:
        return F.normalize(x, dim=1, eps=eps)
    return x / _ChannelNorm.apply(x).clamp_min(eps).expand_as(x)
