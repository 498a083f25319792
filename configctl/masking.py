"""How parameter values are shown: SecureString values never are, in any output mode.

Every renderer (table, plain, JSON, YAML, diff, error messages) goes through `shown_value`; nothing else
in configctl turns a value into text for people or machines.
"""

from __future__ import annotations

import re

MASK = "********"

_VALUE_ECHO = re.compile(r"(Value\s+')(.*?)('\s+at\s+'value')", re.DOTALL)


def shown_value(value: str, *, secret: bool) -> str:
    """The value as it may be printed."""
    return MASK if secret else value


def scrub(message: str, *, values: list[str]) -> str:
    """Remove secret values from an error message (AWS validation errors can echo the input value)."""
    cleaned = _VALUE_ECHO.sub(lambda m: f"{m.group(1)}{MASK}{m.group(3)}", message)
    for value in sorted((v for v in values if v), key=len, reverse=True):
        cleaned = cleaned.replace(value, MASK)
    return cleaned
