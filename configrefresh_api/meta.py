"""The part of `metadata` the project reads and writes, typed."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any


def _strings(raw: object) -> dict[str, str]:
    if not isinstance(raw, Mapping):
        return {}
    return {str(key): str(value) for key, value in raw.items()}


@dataclasses.dataclass(frozen=True)
class OwnerReference:
    api_version: str
    kind: str
    name: str
    uid: str

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> OwnerReference:
        return cls(
            api_version=str(body.get("apiVersion", "")),
            kind=str(body.get("kind", "")),
            name=str(body.get("name", "")),
            uid=str(body.get("uid", "")),
        )

    def to_body(self) -> dict[str, Any]:
        return {"apiVersion": self.api_version, "kind": self.kind, "name": self.name, "uid": self.uid}


@dataclasses.dataclass(frozen=True)
class ObjectMeta:
    """Name, namespace, labels, annotations and owners; what the API server sets (uid, generation,
    creationTimestamp, resourceVersion) is read when present and written back only if it was read.
    Fields the project never uses (managedFields, finalizers) are not kept."""

    name: str
    namespace: str = ""
    labels: Mapping[str, str] = dataclasses.field(default_factory=dict)
    annotations: Mapping[str, str] = dataclasses.field(default_factory=dict)
    owner_references: tuple[OwnerReference, ...] = ()
    uid: str = ""
    generation: int | None = None
    creation_timestamp: str = ""
    resource_version: str = ""

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> ObjectMeta:
        generation = body.get("generation")
        return cls(
            name=str(body.get("name", "")),
            namespace=str(body.get("namespace") or ""),
            labels=_strings(body.get("labels")),
            annotations=_strings(body.get("annotations")),
            owner_references=tuple(
                OwnerReference.from_body(item) for item in body.get("ownerReferences") or ()
            ),
            uid=str(body.get("uid") or ""),
            generation=int(generation) if generation is not None else None,
            creation_timestamp=str(body.get("creationTimestamp") or ""),
            resource_version=str(body.get("resourceVersion") or ""),
        )

    def to_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"name": self.name}
        if self.namespace:
            body["namespace"] = self.namespace
        if self.labels:
            body["labels"] = dict(self.labels)
        if self.annotations:
            body["annotations"] = dict(self.annotations)
        if self.owner_references:
            body["ownerReferences"] = [owner.to_body() for owner in self.owner_references]
        if self.uid:
            body["uid"] = self.uid
        if self.generation is not None:
            body["generation"] = self.generation
        if self.creation_timestamp:
            body["creationTimestamp"] = self.creation_timestamp
        if self.resource_version:
            body["resourceVersion"] = self.resource_version
        return body
