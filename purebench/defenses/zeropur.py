"""ZeroPur (Liu et al.): training-free purification by Guided Shift + Adaptive Projection.

The classifier is split into the embedding f and the decision layer g (Eq. 1, 3). Guided Shift
(Alg. 1, Eq. 11-14) moves the input so that f(x) aligns with f(blur(x)); Adaptive Projection
(Alg. 2, Eq. 15-20) then moves the input along the feature-space direction GS found, held back
by a perceptual regulariser built from the classifier's own features. Everything is batched but
per-example: losses are summed over images (never averaged across them) and the classifier is in
eval mode, so purifying a batch equals purifying each image alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from purebench.classifiers import Classifier
from purebench.defenses.base import DEFENSES, Defense
from purebench.defenses.blur_ops import NON_DIFFERENTIABLE_BLURS, make_blur
from purebench.defenses.channel_norm import normalize_channels
from purebench.errors import PurebenchError
from purebench.seeding import rand_like


def _clip(x: torch.Tensor, center: torch.Tensor, eps: float) -> torch.Tensor:
    """Alg. 1 lines 6-7 / Alg. 2 lines 11-12: back into the eps_pfy ball around the input and [0, 1]."""
    return torch.min(torch.max(x, center - eps), center + eps).clamp(0, 1)


def _per_image_sum(x: torch.Tensor) -> torch.Tensor:
    """Sum over all but the batch dimension (summing the unflattened tensor spares its backward a copy)."""
    return x.sum(dim=tuple(range(1, x.dim())))


def _per_example_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return _per_image_sum(a * b)


def _clamp_passes_its_bounds() -> bool:
    """Whether autograd's clamp passes the gradient at a value equal to a bound (torch has answered both ways;
    pixels land on 0 and 1 often, so the tracked gradient follows the installed torch, as unrolling would)."""
    at_bounds = torch.tensor([0.0, 1.0], requires_grad=True)
    (grad,) = torch.autograd.grad(at_bounds.clamp(0, 1).sum(), at_bounds)
    return bool(grad.all())


CLAMP_PASSES_BOUNDS = _clamp_passes_its_bounds()


class _ClipChain:
    """The exact derivative of a chain of ZeroPur's steps with respect to the chain's input, tracked in the
    forward pass: ``value`` is d x_t / d input, per pixel.

    Every step is x_t = clamp01(clip(x_{t-1} + a * sign(grad), input +- eps)) (Alg. 1 lines 5-7, Alg. 2 lines
    10-12). sign has derivative zero wherever it is differentiable, so whatever the gradient depended on (the
    blur, the features, the AP direction, the momentum) drops out, and the Jacobian is diagonal: 1 through the
    centre where the ball clip binds, d x_{t-1} where it does not, half of each on a tie (autograd's max/min
    split a tie's gradient), 0 where [0, 1] clamps. So a clamp's 0 lasts until a later step's ball clip binds.
    This is the gradient autograd gets by unrolling every step (tested equal), at the cost of a purification
    instead of a second-order backward through each step.
    """

    def __init__(self, start: torch.Tensor) -> None:
        self.value = torch.ones_like(start)

    @torch.no_grad()
    def clip(self, stepped: torch.Tensor, center: torch.Tensor, eps: float) -> torch.Tensor:
        """:func:`_clip` (the same operations, so the same values; no graph) carrying ``value`` through it."""
        low, high = center - eps, center + eps
        through_max = (stepped > low).to(stepped) + 0.5 * (stepped == low).to(stepped)  # d max(stepped, low)
        bounded = torch.max(stepped, low)
        through_min = (bounded < high).to(stepped) + 0.5 * (bounded == high).to(stepped)  # d min(bounded, high)
        inside = torch.min(bounded, high)
        in_range = ((inside >= 0) & (inside <= 1)) if CLAMP_PASSES_BOUNDS else ((inside > 0) & (inside < 1))
        self.value = in_range.to(stepped) * (
            through_min * (through_max * self.value + 1 - through_max) + 1 - through_min
        )
        return inside.clamp(0, 1)


class _Graph:
    """Which inner steps an adaptive attacker differentiates through.

    The last ``keep_last`` of ``total`` inner steps are unrolled into the autograd graph
    (``create_graph``); earlier steps are detached and bridged by a straight-through estimator
    (BPDA identity), which truncates memory when the full unrolled graph does not fit.
    """

    def __init__(self, total: int, keep_last: int) -> None:
        self.first_kept, self.count = total - max(0, min(keep_last, total)), 0
        self.differentiable = keep_last > 0

    def step(self) -> bool:
        keep = self.count >= self.first_kept and self.differentiable
        self.count += 1
        return keep

    @staticmethod
    def enter(x: torch.Tensor, anchor: torch.Tensor, keep: bool) -> torch.Tensor:
        """The iterate entering a step: a fresh leaf, or connected to the input's graph."""
        if not keep:
            return x.detach().requires_grad_(True)
        if x.grad_fn is None and x is not anchor:  # first unrolled step after truncated ones
            return anchor + (x - anchor).detach()
        return x

    @staticmethod
    def leave(x: torch.Tensor, keep: bool) -> torch.Tensor:
        return x if keep else x.detach()


class ZeroPur(Defense):
    """GS (+ AP) purifier; hyper-parameters are documented in conf/defense/zeropur.yaml."""

    trainable = False
    differentiable = True
    # Every GS and AP step moves by a * sign(grad) (Alg. 1 line 6, Alg. 2 line 11): the exact gradient is the
    # identity masked where [0, 1] clamps (_ClipChain), blind to how the steps depend on the input.
    shattered_gradient = True

    def __init__(
        self,
        classifier: Classifier,
        eps: float,
        blur: Callable[[torch.Tensor], torch.Tensor],
        gs_steps: int,
        gs_step_size: float | None,
        gs_random_start: bool,
        gs_momentum: float | None,
        gs_detach_blur: bool,
        ap: bool,
        ap_steps: int,
        ap_layers: Sequence[str],
        ap_direction: str,
        ap_layer_mean: bool,
        lambda1: float,
        lambda2: float,
        perceptual: bool,
        perceptual_layers: Sequence[str],
        grad_checkpoint: bool = True,
    ) -> None:
        super().__init__()
        if not 0 < eps <= 1:
            raise PurebenchError(f"defense.eps (eps_pfy) must be in (0, 1], got {eps}.")
        if ap_direction not in ("raw", "unit"):
            raise PurebenchError(
                f"defense.ap_direction must be 'raw' (Eq. 16, the code) or 'unit', got '{ap_direction}'."
            )
        self.classifier = classifier
        self.eps, self.blur = eps, blur
        self.gs_steps = gs_steps
        self.gs_step_size = gs_step_size if gs_step_size is not None else eps / gs_steps
        self.gs_random_start, self.gs_momentum, self.gs_detach_blur = gs_random_start, gs_momentum, gs_detach_blur
        self.ap, self.ap_steps, self.ap_layers, self.ap_direction = ap, ap_steps, list(ap_layers), ap_direction
        self.ap_layer_mean = ap_layer_mean
        self.lambda1, self.lambda2 = lambda1, lambda2
        self.perceptual, self.perceptual_layers = perceptual, list(perceptual_layers)
        self.randomized = gs_random_start  # the random start is the only source of randomness
        self.grad_checkpoint = grad_checkpoint

    def _clip(self, stepped: torch.Tensor, center: torch.Tensor, chain: _ClipChain | None) -> torch.Tensor:
        return _clip(stepped, center, self.eps) if chain is None else chain.clip(stepped, center, self.eps)

    # ---- Guided Shift (Alg. 1) -------------------------------------------------------------
    @torch.enable_grad()
    def guided_shift(
        self, x_adv: torch.Tensor, graph: _Graph | None = None, chain: _ClipChain | None = None
    ) -> torch.Tensor:
        """T_g sign steps ascending cos(f(x), f(blur(x))) (Eq. 11, 13), blur recomputed each step (Eq. 14);
        ``chain`` tracks the derivative of the result with respect to ``x_adv``."""
        graph = graph or _Graph(total=0, keep_last=0)
        x = x_adv
        if self.gs_random_start:  # Alg. 1 line 1: random start inside the purification budget
            x = self._clip(x + (2 * rand_like(x) - 1) * self.eps, x_adv, chain)
        momentum = torch.zeros_like(x_adv)
        for _ in range(self.gs_steps):
            keep = graph.step()
            x = graph.enter(x, x_adv, keep)
            stepped, momentum = self._unrolled(keep, self._gs_step, x, momentum)
            x = graph.leave(self._clip(stepped, x_adv, chain), keep)  # lines 6-7
        return x

    def _gs_step(self, x: torch.Tensor, momentum: torch.Tensor, keep: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Alg. 1 lines 3-5: one sign step on cos(f(x), f(blur(x))), before the clip; ``keep``: the step is
        unrolled for an attacker, so the graph of its gradient is kept (create_graph)."""
        blurred = self.blur(x)  # Alg. 1 line 3
        if self.gs_detach_blur:
            blurred = blurred.detach()
        z, z_blur = self.classifier.embed(x), self.classifier.embed(blurred)  # line 4
        similarity = F.cosine_similarity(z, z_blur, dim=1)  # Eq. 11, one value per image
        (grad,) = torch.autograd.grad(similarity.sum(), x, create_graph=keep)
        if self.gs_momentum is not None:  # authors' code: momentum on the L1-normalised gradient
            l1 = grad.abs().flatten(1).sum(1).clamp_min(1e-12).view(-1, 1, 1, 1)
            momentum = self.gs_momentum * momentum + grad / l1
            grad = momentum
        return x + self.gs_step_size * grad.sign(), momentum  # line 5

    def _unrolled(self, keep: bool, step: Callable[..., Any], *args: Any) -> Any:
        """``step(*args, keep)``; an unrolled step under ``grad_checkpoint`` is recomputed in the backward pass
        (non-reentrant checkpointing, which supports the step's own create_graph gradient), so the
        attacker's memory stays flat in the number of unrolled steps."""
        if keep and self.grad_checkpoint:
            return checkpoint(step, *args, keep, use_reentrant=False)
        return step(*args, keep)

    # ---- Adaptive Projection (Alg. 2) ------------------------------------------------------
    def _phi(self, feats: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """phi: the perceptual layers' activations normalised over channels (Sec. 3.3)."""
        return {layer: normalize_channels(feats[layer], eps=1e-10) for layer in self.perceptual_layers}

    def _phi_distance(self, feats: dict[str, torch.Tensor], phi_ref: dict[str, torch.Tensor]) -> torch.Tensor:
        """||phi(x_p) - phi(x_init)||_2 per image: channel-normalised activations / sqrt(w_l h_l) (Sec. 3.3);
        ``phi_ref`` = phi(x_init), computed once per purification."""
        total = 0.0
        for layer, a in self._phi(feats).items():
            b = phi_ref[layer]
            h, w = a.shape[-2:]
            total = total + _per_image_sum((a - b) ** 2) / (h * w)
        return torch.sqrt(total + 1e-12)

    @torch.enable_grad()
    def adaptive_projection(
        self, x_init: torch.Tensor, x_g: torch.Tensor, graph: _Graph | None = None, chain: _ClipChain | None = None
    ) -> torch.Tensor:
        """T_p sign steps of size eps/T_p on L (Alg. 2 line 9), from x_p^0 = x_init (line 1); ``chain`` tracks
        the derivative of the result with respect to ``x_init`` (x_g enters only through the signs)."""
        graph = graph or _Graph(total=0, keep_last=0)
        layers = sorted(set(self.ap_layers) | set(self.perceptual_layers if self.perceptual else []))
        feats_init = self.classifier.features(x_init, layers)[1]
        if not graph.differentiable:
            feats_init = {k: v.detach() for k, v in feats_init.items()}
        feats_g = self.classifier.features(x_g, self.ap_layers)[1]
        directions = {}
        for layer in self.ap_layers:  # line 5 / Eq. 17: Delta u_g
            du_g = feats_g[layer] - feats_init[layer]
            if self.ap_direction == "unit":  # a per-image unit direction (neither the paper nor the code)
                norm = du_g.flatten(1).norm(dim=1).clamp_min(1e-12)
                du_g = du_g / norm.view(-1, *[1] * (du_g.dim() - 1))
            directions[layer] = du_g if graph.differentiable else du_g.detach()
        phi_init = self._phi(feats_init) if self.perceptual else {}
        # A node of its own: unrolled, the first step's gradient must not also flow through feats_init (at
        # x_p = x_init it cancels there and the step would be lost, as it was before session 12).
        x_p = x_init.clone()
        for _ in range(self.ap_steps):
            keep = graph.step()
            x_p = graph.enter(x_p, x_init, keep)
            stepped = self._unrolled(keep, self._ap_step, x_p, feats_init, phi_init, directions, layers)
            x_p = graph.leave(self._clip(stepped, x_init, chain), keep)  # lines 11-12
        return x_p

    def _ap_step(
        self,
        x_p: torch.Tensor,
        feats_init: dict[str, torch.Tensor],
        phi_init: dict[str, torch.Tensor],
        directions: dict[str, torch.Tensor],
        layers: list[str],
        keep: bool,
    ) -> torch.Tensor:
        """Alg. 2 lines 3-10: one sign step of size eps/T_p on L = lambda1 * projection + lambda2 * PR, before
        the clip."""
        feats_p = self.classifier.features(x_p, layers)[1]
        projection = sum(  # lines 4-8 / Eq. 16 (the code's ILAProjLoss): -(Delta u_g . Delta u_p), summed over S
            -_per_example_dot(directions[layer], feats_p[layer] - feats_init[layer]) for layer in self.ap_layers
        )
        # line 9: the code weights the sum over S by lambda1; Eq. 15/18 average over S (ap_layer_mean)
        loss = (self.lambda1 / len(self.ap_layers) if self.ap_layer_mean else self.lambda1) * projection
        if self.perceptual:
            loss = loss + self.lambda2 * self._phi_distance(feats_p, phi_init)
        (grad,) = torch.autograd.grad(loss.sum(), x_p, create_graph=keep)
        return x_p - self.eps / self.ap_steps * grad.sign()  # lines 2, 10

    def _run(self, x: torch.Tensor, graph: _Graph, chain: _ClipChain | None = None) -> torch.Tensor:
        out = self.guided_shift(x, graph, None if self.ap else chain)  # with AP, GS's result enters only signs
        if graph.differentiable and out.grad_fn is None and x.requires_grad:
            out = x + (out - x).detach()  # GS truncated entirely: straight-through, so AP's direction stays connected
        return self.adaptive_projection(x, out, graph, chain) if self.ap else out

    def purify(self, x: torch.Tensor) -> torch.Tensor:
        """GS then AP; no autograd graph is kept (every inner step starts from a detached leaf)."""
        return self._run(x, _Graph(total=0, keep_last=0)).detach()

    def adaptive_purify(self, x: torch.Tensor, backprop_steps: int | None = None) -> torch.Tensor:
        """GS then AP with the exact gradient for adaptive attacks. Through every step (``backprop_steps=None``)
        it is tracked in the forward pass (:class:`_ClipChain`): the identity but where a step clamped a pixel
        to [0, 1], since each step is a clipped sign step; ``backprop_steps=k`` unrolls the last k steps through
        autograd (create_graph) and bridges earlier ones straight-through, the same gradient for k = all steps,
        several times slower."""
        if backprop_steps is None:
            chain = _ClipChain(x)
            out = self._run(x.detach(), _Graph(total=0, keep_last=0), chain).detach()
            return out + chain.value * (x - x.detach())  # value out, gradient chain.value
        total = self.gs_steps + (self.ap_steps if self.ap else 0)
        out = self._run(x, _Graph(total=total, keep_last=backprop_steps))
        return out if out.grad_fn is not None else x + (out - x).detach()  # nothing unrolled: straight-through


def _build(
    classifier: Classifier,
    ap: bool,
    blur: str,
    blur_level: float,
    tv_weight: float,
    tv_steps: int,
    ap_layers: Sequence[str] | None,
    perceptual_layers: Sequence[str] | None,
    **params,
) -> ZeroPur:
    if len(classifier.stages) < 2 and (ap_layers is None or perceptual_layers is None):
        raise PurebenchError(f"classifier '{classifier.name}' declares fewer than two stages; set defense.ap_layers.")
    if blur in NON_DIFFERENTIABLE_BLURS and not params["gs_detach_blur"]:
        raise PurebenchError(
            f"defense.blur={blur} works on 8-bit PIL images and has no gradient: keep defense.gs_detach_blur=true "
            "(the authors' code detaches the blurred branch) or choose blur=gaussian, median or tvm."
        )
    return ZeroPur(
        classifier,
        blur=make_blur(blur, blur_level, tv_weight, tv_steps),
        ap=ap,
        ap_layers=list(ap_layers) if ap_layers else classifier.stages[-2:],
        perceptual_layers=list(perceptual_layers) if perceptual_layers else classifier.stages,
        **params,
    )


@DEFENSES.register("zeropur")
def zeropur(name: str, classifier: Classifier, **params) -> ZeroPur:
    """ZeroPur = Guided Shift + Adaptive Projection."""
    return _build(classifier, ap=True, **params)


@DEFENSES.register("zeropur_gs")
def zeropur_gs(name: str, classifier: Classifier, **params) -> ZeroPur:
    """Guided Shift only (Table 1's "GS" rows); the AP keys of the config are ignored by design."""
    return _build(classifier, ap=False, **params)
