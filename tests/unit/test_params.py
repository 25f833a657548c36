"""Numbers from clients are parsed in one place (webapp/params.py): odd input is a 400 with a code."""

from __future__ import annotations

import pytest

from webapp.params import MAX_ID, InvalidParameter, parse_int


@pytest.mark.parametrize(
    "raw",
    ["²", "١٢", "１", "1.5", "1e3", "", " ", "--1", "0x10", "99999999999999999999999", True, 1.0, None, [1]],
)
def test_odd_values_are_invalid_parameters(raw) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidParameter) as raised:
        parse_int("event_id", raw, 1, MAX_ID)
    assert raised.value.code == "invalid_parameter" and raised.value.status == 400
    assert "event_id" in raised.value.message


@pytest.mark.parametrize("raw", ["0", "-5", str(MAX_ID + 1), 0, MAX_ID + 1])
def test_values_out_of_bounds_are_invalid(raw) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidParameter, match="between 1 and"):
        parse_int("event_id", raw, 1, MAX_ID)


@pytest.mark.parametrize(("raw", "value"), [("1", 1), (" 42 ", 42), ("+7", 7), (str(MAX_ID), MAX_ID), (12, 12)])
def test_plain_numbers_parse(raw, value) -> None:  # type: ignore[no-untyped-def]
    assert parse_int("event_id", raw, 1, MAX_ID) == value
