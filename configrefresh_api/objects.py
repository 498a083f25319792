"""The part every kind of ours shares: `metadata`, a typed `spec`, an optional typed `status`.

ConfigRoute and ConfigRefresh each name their kind and the types of their spec and status; reading and
writing the whole object is written once here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from configrefresh_api.groupversion import API_VERSION
from configrefresh_api.meta import ObjectMeta


class Part(Protocol):
    """A spec or status: written back with `to_body`."""

    def to_body(self) -> dict[str, Any]: ...


SpecT = TypeVar("SpecT", bound=Part)
StatusT = TypeVar("StatusT", bound=Part)


@dataclasses.dataclass(frozen=True)
class TypedObject(Generic[SpecT, StatusT]):
    KIND: ClassVar[str]

    metadata: ObjectMeta
    spec: SpecT
    status: StatusT | None = None

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def namespace(self) -> str:
        return self.metadata.namespace

    @staticmethod
    def read_parts(
        body: Mapping[str, Any],
        spec: Callable[[Mapping[str, Any]], SpecT],
        status: Callable[[Mapping[str, Any]], StatusT],
    ) -> tuple[ObjectMeta, SpecT, StatusT | None]:
        """(metadata, spec, status) of `body`, for a kind's `from_body`; status None when absent."""
        raw_status = body.get("status")
        return (
            ObjectMeta.from_body(body.get("metadata") or {}),
            spec(body.get("spec") or {}),
            status(raw_status) if raw_status is not None else None,
        )

    def to_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "apiVersion": API_VERSION,
            "kind": self.KIND,
            "metadata": self.metadata.to_body(),
            "spec": self.spec.to_body(),
        }
        if self.status is not None:
            body["status"] = self.status.to_body()
        return body
