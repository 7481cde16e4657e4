from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from arbwire.numbers import (
    NumberError,
    is_zero,
    plain_text,
    to_units,
    units_to_decimal,
    units_to_text,
)


@given(st.decimals(min_value=0, max_value=10**9, places=8, allow_nan=False, allow_infinity=False))
def test_units_are_exact(value):
    text = format(value, "f")
    units = to_units(text)
    assert units_to_decimal(units) == value
    assert Decimal(units_to_text(units)) == value


@pytest.mark.parametrize(
    ("text", "expected"),
    [("0.1", 10**17), ("2683.80000000", 2683_8 * 10**17), ("7", 7 * 10**18), ("1.8E-4", 18 * 10**13), ("1e2", 100 * 10**18)],
)
def test_known_values(text, expected):
    assert to_units(text) == expected


@pytest.mark.parametrize("bad", ["", "abc", "1.2.3", "-1", "nan", "inf", "0.0000000000000000001", "1e999999"])
def test_bad_text_is_a_clear_error(bad):
    with pytest.raises(NumberError):
        to_units(bad)


def test_plain_text_keeps_json_numbers_exact():
    assert plain_text(0.1) == "0.1"
    assert plain_text(Decimal("1.8E-4")) == "0.00018"
    assert plain_text(14.909733438479636) == "14.909733438479636"


def test_zero_sizes():
    assert is_zero("0") and is_zero("0.00000000") and is_zero("0.0")
    assert not is_zero("0.00000001") and not is_zero("10")


@pytest.mark.parametrize("bad", [Decimal("1e999999999"), Decimal("NaN"), Decimal("Infinity")])
def test_plain_text_refuses_absurd_numbers(bad):
    with pytest.raises(NumberError):
        plain_text(bad)
