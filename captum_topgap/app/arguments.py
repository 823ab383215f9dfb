"""Argument types of the command line: each rejects a bad value before any work, with a one-line message
that names the allowed range (argparse prints it and exits with status 2).

Example:
    >>> positive_int("5"), fraction("8/255") == 8 / 255
    (5, True)
    >>> positive_int("-5")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: must be a whole number ≥ 1, got '-5'
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

from captum_topgap._checks import check_device


class UsageError(ValueError):
    """A command's arguments cannot work together or with the files they name (exit status 2)."""


def _number(text: str, kind: type) -> float:
    try:
        value = kind(text)
    except ValueError:
        noun = "a whole number" if kind is int else "a number"
        raise argparse.ArgumentTypeError(f"must be {noun}, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def bounded(kind: type, minimum: float | None = None, maximum: float | None = None,
            strict_minimum: bool = False) -> Callable[[str], float]:
    """An argparse type: ``kind`` (int or float) within the bounds, or an ArgumentTypeError naming them.

    Example:
        >>> bounded(float, 0.0, 1.0)("0.25")
        0.25
    """
    def parse(text: str) -> float:
        value = _number(text, kind)
        below = minimum is not None and (value <= minimum if strict_minimum else value < minimum)
        if below or (maximum is not None and value > maximum):
            low = "" if minimum is None else (f" > {minimum:g}" if strict_minimum else f" ≥ {minimum:g}")
            high = "" if maximum is None else f"{' and' if low else ''} ≤ {maximum:g}"
            noun = "a whole number" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"must be {noun}{low}{high}, got {text!r}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


positive_int = bounded(int, 1)
non_negative_int = bounded(int, 0)
probability = bounded(float, 0.0, 1.0)
positive_float = bounded(float, 0.0, strict_minimum=True)
non_negative_float = bounded(float, 0.0)
image_side = bounded(int, 16, 4096)


def fraction(text: str) -> float:
    """``"8/255"`` or ``"0.03"``: an L∞ budget in [0, 1].

    Example:
        >>> fraction("0")
        0.0
    """
    numerator, _, denominator = text.partition("/")
    divisor = _number(denominator, float) if denominator else 1.0
    value = _number(numerator, float) / divisor if divisor else math.inf
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a budget in [0, 1] (images in [0, 1]), e.g. 8/255, got {text!r}")
    return value


def top_k(text: str) -> int | float:
    """Top-GAP's k: positions (a whole number ≥ 1) or a fraction of them in (0, 1].

    Example:
        >>> top_k("64"), top_k("0.25")
        (64, 0.25)
    """
    if "." in text or "e" in text.lower():
        return bounded(float, 0.0, 1.0, strict_minimum=True)(text)
    return int(positive_int(text))


def int_list(text: str) -> list[int]:
    """Comma-separated whole numbers ≥ 0 (classes, channels, seeds).

    Example:
        >>> int_list("0,3")
        [0, 3]
    """
    items = [item for item in text.split(",") if item.strip()]
    if not items:
        raise argparse.ArgumentTypeError("must list at least one whole number, e.g. 0,3")
    return [int(non_negative_int(item.strip())) for item in items]


def device(text: str) -> str:
    """A torch device that exists here (``cpu``, ``cuda``, ``cuda:1``): :func:`captum_topgap._checks.check_device`.

    Example:
        >>> device("cpu")
        'cpu'
    """
    try:
        check_device(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error).replace("`device` ", "").replace("device='cpu'", "--device cpu")
                                         ) from None
    return text
