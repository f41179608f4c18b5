"""The run's top-level settings, checked before anything is built or computed.

Hydra passes a mistyped value through as a string (``n_examples=abc``), and Python's ``int()``
silently truncates a float (``n_examples=8.9`` evaluated 8 images). Each check here names the key
and says what to give, so a bad value costs one paragraph and exit status 2, never a traceback
mid-attack or a row computed from something the user did not ask for.
"""

from __future__ import annotations

import logging
import os
import re
from fractions import Fraction
from typing import Any

from omegaconf import DictConfig, open_dict

from purebench.errors import PurebenchError
from purebench.eval.loggers import check_logger

log = logging.getLogger(__name__)

MAX_SEED = 2**63 - 1  # torch.manual_seed and NumPy take up to 64 bits; derived seeds stay within 63
FRACTION = re.compile(r"^\s*\d+(\.\d*)?\s*/\s*\d+(\.\d*)?\s*$")  # 8/255, 0.5/255


EXAMPLES = {"n_examples": 128, "batch_size": 64, "seed": 0, "threads": 1, "figures": 4}


def whole_number(cfg: DictConfig, key: str, minimum: int, meaning: str) -> int:
    """``cfg[key]`` as an int >= ``minimum``; a fraction (8.9) or text is refused, not truncated."""
    value = cfg[key]
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if not number or value != int(value) or value < minimum:
        raise PurebenchError(
            f"{key}={value!r} is not valid: {key} is {meaning}, a whole number >= {minimum} (e.g. {key}="
            f"{EXAMPLES[key]}). Fix the value on the command line or in the config."
        )
    return int(value)


def switch(cfg: DictConfig, key: str) -> bool:
    """``cfg[key]`` as a bool; anything but true/false is refused (a typo must not read as either)."""
    value = cfg.get(key, False)
    if not isinstance(value, bool):
        raise PurebenchError(f"{key}={value!r} is not valid: {key} is a switch, true or false (e.g. {key}=true).")
    return value


def protocol_name(cfg: DictConfig) -> str:
    """``cfg.protocol`` as a plain name ('' when null): it labels rows, so it must be one word a table can show."""
    value = cfg.get("protocol")
    if value is None:
        return ""
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9_.-]+", value):
        raise PurebenchError(
            f"protocol={value!r} is not valid: it names the protocol of a recipe (letters, digits, '_', '-', '.'), "
            "e.g. protocol=headline, or null."
        )
    return value


def fractions_to_numbers(group: DictConfig, name: str) -> None:
    """Replace values written as fractions (``attack.eps=8/255``) by their float, in place and
    before the config is hashed, so ``8/255`` and ``0.0313725...`` are the same setting."""
    with open_dict(group):
        for key, value in list(group.items()):
            if isinstance(value, str) and FRACTION.match(value):
                numerator, denominator = (Fraction(part.strip()) for part in value.split("/"))
                if denominator == 0:
                    raise PurebenchError(f"{name}.{key}={value} divides by zero; give a number such as 8/255.")
                group[key] = float(numerator / denominator)


def check_settings(cfg: DictConfig) -> dict[str, Any]:
    """Validate the top-level keys (and fractions in the attack group); returns the integer and
    switch settings. Runs first in :func:`purebench.eval.runner.evaluate`, before any output or model."""
    settings = {
        "n_examples": whole_number(cfg, "n_examples", 1, "the number of images to evaluate"),
        "batch_size": whole_number(cfg, "batch_size", 1, "the number of images per batch"),
        "seed": whole_number(cfg, "seed", 0, "the seed of the subset, the attack and the defense"),
        "threads": whole_number(cfg, "threads", 0, "the number of torch CPU threads (0: torch's default)"),
        "figures": whole_number(cfg, "figures", 0, "the number of images in the purification figure (0: none)"),
        "skip_finished": switch(cfg, "skip_finished"),
        "protocol": protocol_name(cfg),
    }
    if settings["seed"] > MAX_SEED:
        raise PurebenchError(
            f"seed={settings['seed']} is too large: torch and NumPy take seeds below 2**63 ({MAX_SEED}). "
            "Use a smaller seed (papers use 0, 1, 2, ...)."
        )
    cores = os.cpu_count() or 1
    if settings["threads"] > cores:
        log.warning(
            "threads=%d is more than the %d CPU cores of this machine: the run will be slower, not faster "
            "(use threads=%d or less; 0 keeps torch's default)",
            settings["threads"], cores, cores,
        )  # fmt: skip
    fractions_to_numbers(cfg.attack, "attack")
    check_logger(cfg.logger)
    return settings
