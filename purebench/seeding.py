"""Per-example randomness.

Every random draw a defense makes for an image comes from a generator seeded by
(run seed, dataset index of that image, stream). So the purified image of example ``i`` is the
same whether it was processed alone, in a batch of 128 or in shard 3 of 8: purification never
depends on batch size, order or sharding (an attack's random start is seeded per batch). Outside a :func:`per_example` context the draws fall back to
torch's global generator, which keeps defenses usable as plain modules.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
from collections.abc import Iterator, Sequence
from contextvars import ContextVar

import numpy as np
import torch

_generators: ContextVar[list[torch.Generator] | None] = ContextVar("_generators", default=None)
_attack_draws: ContextVar[tuple[int, tuple[int, ...], str] | None] = ContextVar("_attack_draws", default=None)


def derive_seed(*parts: object) -> int:
    """A stable 63-bit seed from any printable parts (stable across processes, unlike ``hash``)."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch global generators (for code we do not control, e.g. attacks)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def generators(seed: int, indices: Sequence[int], stream: str = "defense") -> list[torch.Generator]:
    """One CPU generator per example, seeded by (seed, dataset index, stream)."""
    gens = []
    for index in indices:
        g = torch.Generator(device="cpu")
        g.manual_seed(derive_seed(seed, int(index), stream))
        gens.append(g)
    return gens


@contextlib.contextmanager
def row_generators(gens: Sequence[torch.Generator]) -> Iterator[None]:
    """Within this context, :func:`rand_like`/:func:`randn_like` draw row ``k`` of a batch from ``gens[k]``.

    A batch that stacks several draws of the same examples (EOT draws, repeated evaluations) passes
    the concatenation of each draw's generators: every row then gets exactly the numbers it would get
    if that draw ran alone, so stacking never changes a draw.
    """
    token = _generators.set(list(gens))
    try:
        yield
    finally:
        _generators.reset(token)


@contextlib.contextmanager
def per_example(seed: int, indices: Sequence[int], stream: str = "defense") -> Iterator[None]:
    """Within this context, :func:`rand_like`/:func:`randn_like` draw row ``k`` from example ``indices[k]``'s generator."""
    with row_generators(generators(seed, indices, stream)):
        yield


def draw_generators(n_draws: int, batch_size: int) -> list[list[torch.Generator]]:
    """Per-row generators of ``n_draws`` fresh draws for a batch of ``batch_size`` rows.

    Each draw's seed comes from torch's global generator (seeded per batch by the runner before an
    attack), each row's generator from that seed and the row, so draw ``j`` of row ``k`` is the same
    whether the draws run one at a time or stacked into one batch.
    """
    seeds = torch.randint(0, 2**62, (n_draws,)).tolist()
    return [generators(seed, range(batch_size), "draw") for seed in seeds]


def stacked_draws(x: torch.Tensor, draws: Sequence[Sequence[torch.Generator]], per_call: int) -> Iterator[torch.Tensor]:
    """``x`` repeated once per draw, ``per_call`` draws at a time; each yielded batch is consumed inside
    :func:`row_generators` of its draws' generators, so row ``k`` of draw ``j`` gets draw ``j``'s numbers
    whatever ``per_call`` is. A single draw yields ``x`` itself (a purifier returning its input stays
    recognisable)."""
    for start in range(0, len(draws), per_call):
        chunk = draws[start : start + per_call]
        with row_generators([g for draw in chunk for g in draw]):
            yield x if len(chunk) == 1 else x.repeat(len(chunk), *([1] * (x.dim() - 1)))


class UnknownDraws(ValueError):
    """A query whose examples the known draws of :func:`attack_draws` do not name."""


@contextlib.contextmanager
def attack_draws(seed: int, indices: Sequence[int], stream: str) -> Iterator[None]:
    """Name the draws an attacker who knows the defense's randomness replays (:func:`replay_attack_draws`):
    those of ``stream`` for ``indices``, the draws the evaluation will make."""
    token = _attack_draws.set((seed, tuple(int(i) for i in indices), stream))
    try:
        yield
    finally:
        _attack_draws.reset(token)


@contextlib.contextmanager
def replay_attack_draws(batch_size: int) -> Iterator[None]:
    """Per-example draws restarted from the seeds named by :func:`attack_draws`, on every call: the
    defense becomes the fixed function the evaluation will apply."""
    spec = _attack_draws.get()
    if spec is None or len(spec[1]) != batch_size:
        raise UnknownDraws(f"draws known for {0 if spec is None else len(spec[1])} examples, queried with {batch_size}")
    with per_example(*spec):
        yield


def _draw(x: torch.Tensor, sampler: str) -> torch.Tensor:
    gens = _generators.get()
    fn = torch.rand if sampler == "rand" else torch.randn
    if gens is None:
        return fn(x.shape, device=x.device, dtype=x.dtype)
    # A batch may be a repeat of the examples (EOT samples); row k then uses generator k % n.
    if x.shape[0] % len(gens):
        raise ValueError(f"batch of {x.shape[0]} does not tile {len(gens)} per-example generators")
    rows = [fn(x.shape[1:], generator=gens[k % len(gens)]) for k in range(x.shape[0])]
    return torch.stack(rows).to(device=x.device, dtype=x.dtype)


def rand_like(x: torch.Tensor) -> torch.Tensor:
    """Uniform [0, 1) noise shaped like ``x``, per-example seeded inside :func:`per_example`."""
    return _draw(x, "rand")


def randn_like(x: torch.Tensor) -> torch.Tensor:
    """Standard normal noise shaped like ``x``, per-example seeded inside :func:`per_example`."""
    return _draw(x, "randn")
