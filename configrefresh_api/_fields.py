"""The one mapping between a typed object's attributes and its body's camelCase keys.

Each kind lists its fields as (attribute, body key, reader); absent and null keys read as None and None
attributes are left out of the body, so `to_body(from_body(body)) == body` for every body the API server
would return in canonical form. Nested objects read with their `from_body` and write with `to_body`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Self

Field = tuple[str, str, Callable[[Any], Any]]


def read(body: Mapping[str, Any] | None, fields: tuple[Field, ...]) -> dict[str, Any]:
    """Keyword arguments for the dataclass: the fields present in `body`, converted."""
    if not isinstance(body, Mapping):
        return {}
    return {attr: reader(body[key]) for attr, key, reader in fields if body.get(key) is not None}


def _plain(value: Any) -> Any:
    if hasattr(value, "to_body"):
        return value.to_body()
    if isinstance(value, tuple):
        return [_plain(item) for item in value]
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    return value


def write(obj: object, fields: tuple[Field, ...]) -> dict[str, Any]:
    """The body of `obj`: every field that is not None, in plain JSON types."""
    body: dict[str, Any] = {}
    for attr, key, _ in fields:
        value = getattr(obj, attr)
        if value is not None:
            body[key] = _plain(value)
    return body


def strings(raw: Any) -> dict[str, str]:
    """A string-to-string map (scope, labels, query parameters)."""
    return {str(key): str(value) for key, value in (raw or {}).items()}


def string_tuple(raw: Any) -> tuple[str, ...]:
    return tuple(str(item) for item in raw or ())


class Mapped:
    """A frozen dataclass whose body is exactly its `FIELDS` table (attribute, body key, reader)."""

    FIELDS: ClassVar[tuple[Field, ...]]

    @classmethod
    def from_body(cls, body: Mapping[str, Any] | None) -> Self:
        return cls(**read(body, cls.FIELDS))

    def to_body(self) -> dict[str, Any]:
        return write(self, self.FIELDS)
