"""Numbers in request bodies, read as JSON Schema reads them.

A JSON ``integer`` is any number without a fractional part (``3`` and ``3.0``); ``true`` and
``"3"`` are not numbers at all. pydantic's lax mode takes ``true`` and ``"3"``; its strict mode
refuses ``3.0``. ``numbers_only`` sits between: numbers only, integral ones for ``int`` fields,
and the fields keep their documented bounds.
"""

from __future__ import annotations

from typing import Any

from pydantic import field_validator


def _number(cls: type, value: Any) -> Any:
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise ValueError("must be a number")
    return value


def numbers_only(*fields: str) -> Any:
    """A model's before-validator: these fields take JSON numbers (or null) only."""
    return field_validator(*fields, mode="before")(_number)
