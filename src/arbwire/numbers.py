"""Exact decimal text <-> scaled integers.

Every price and size arbwire computes with is an ``int`` counting units of
``10**-SCALE_DIGITS``. Integers compare and add exactly (a float can cross a book
or break a checksum), and converting venue text this way costs about what
``float()`` does, while ``Decimal`` arithmetic is several times slower on the hot
path. Eighteen digits cover every venue's tick and lot sizes, including HTX sizes
printed from binary floats (``14.909733438479636``).

The hot path feeds plain decimal text (digits with at most one dot), which every
venue sends except HTX; the HTX decoder normalizes its JSON numbers first.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

SCALE_DIGITS = 18
SCALE = 10**SCALE_DIGITS
_POW = tuple(10 ** (SCALE_DIGITS - k) for k in range(SCALE_DIGITS + 1))


class NumberError(ValueError):
    """Text that is not a plain non-negative decimal with at most 18 decimals."""


def to_units(text: str) -> int:
    """Exact scaled integer for decimal text such as ``"2683.80000000"``."""
    dot = text.find(".")
    try:
        if dot < 0:
            if text.isdigit():
                return int(text) * SCALE
        else:
            digits = text[:dot] + text[dot + 1 :]
            if digits.isdigit():
                return int(digits) * _POW[len(text) - dot - 1]
    except IndexError:
        raise NumberError(f"more than {SCALE_DIGITS} decimals: {text!r}") from None
    return _slow_units(text)


def _slow_units(text: str) -> int:
    """Exponent notation and other valid forms the fast path does not take."""
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise NumberError(f"not a decimal number: {text!r}") from None
    if not value.is_finite() or value < 0:
        raise NumberError(f"not a finite non-negative number: {text!r}")
    if value and value.adjusted() > 30:  # no market quantity is this large; refuse before building it
        raise NumberError(f"too large for a price or size: {text!r}")
    sign, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)
    if exponent < -SCALE_DIGITS:
        value = value.normalize()
        exponent = value.as_tuple().exponent
        assert isinstance(exponent, int)
        if exponent < -SCALE_DIGITS:
            raise NumberError(f"more than {SCALE_DIGITS} decimals: {text!r}")
    return int(value.scaleb(SCALE_DIGITS))


def units_to_decimal(units: int) -> Decimal:
    """The exact Decimal for a scaled integer (no context rounding)."""
    sign = 1 if units < 0 else 0
    return Decimal((sign, tuple(int(c) for c in str(abs(units))), -SCALE_DIGITS))


def units_to_text(units: int) -> str:
    """Shortest plain decimal text for a scaled integer: ``2683800...`` -> ``"2683.8"``."""
    whole, frac = divmod(abs(units), SCALE)
    sign = "-" if units < 0 else ""
    if not frac:
        return f"{sign}{whole}"
    return f"{sign}{whole}.{frac:0{SCALE_DIGITS}d}".rstrip("0")


def plain_text(value: Decimal | int | float | str) -> str:
    """Plain decimal text (no exponent) for a number a venue sent as a JSON number.

    Floats are taken through ``repr``, the shortest text that reads back as the
    same float, which is what the venue's JSON encoder printed.
    """
    if isinstance(value, float):
        value = Decimal(repr(value))
    elif not isinstance(value, Decimal):
        value = Decimal(value)
    exponent = value.as_tuple().exponent
    if not isinstance(exponent, int) or not -64 <= exponent <= 64:
        raise NumberError(f"not a plain market number: {value!r}")
    return format(value, "f")


def is_zero(text: str) -> bool:
    """True for "0", "0.0", "0.00000000": a size that deletes its level."""
    return not text.strip("0.")
