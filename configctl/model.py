"""The values configctl passes between its steps: what the tree wants, what Parameter Store holds.

Frozen dataclasses, no behaviour beyond small derived properties, so layout, plan, apply and output can be
tested apart. Values of SecureString parameters live here in plain text (the plan must compare them);
only `masking` decides how they are shown.
"""

from __future__ import annotations

import dataclasses
import datetime
from typing import Literal

ParameterType = Literal["String", "StringList", "SecureString"]
Tier = Literal["Standard", "Advanced", "Intelligent-Tiering"]

PARAMETER_TYPES: tuple[ParameterType, ...] = ("String", "StringList", "SecureString")
TIERS: tuple[Tier, ...] = ("Standard", "Advanced", "Intelligent-Tiering")


@dataclasses.dataclass(frozen=True)
class InputProblem:
    """One reason the input tree cannot be applied; `source` is `file[:key]` relative to the tree."""

    source: str
    message: str

    def __str__(self) -> str:
        return f"{self.source}: {self.message}"


@dataclasses.dataclass(frozen=True)
class DesiredParameter:
    """A parameter as the config tree declares it.

    `description`, `tier` and `kms_key_id` are managed only when set: None means "leave as is".
    """

    name: str
    value: str = dataclasses.field(repr=False)
    type: ParameterType
    source: str
    description: str | None = None
    tier: Tier | None = None
    kms_key_id: str | None = None
    tags: tuple[tuple[str, str], ...] = ()

    @property
    def secret(self) -> bool:
        return self.type == "SecureString"


@dataclasses.dataclass(frozen=True)
class CurrentParameter:
    """A parameter as Parameter Store holds it now (value decrypted: never print it unmasked)."""

    name: str
    value: str = dataclasses.field(repr=False)
    type: ParameterType
    version: int
    last_modified: datetime.datetime | None = None
    description: str | None = None
    tier: str | None = None
    kms_key_id: str | None = None
    tags: tuple[tuple[str, str], ...] | None = None
    """Read only for parameters whose tags the tree declares (one ListTagsForResource each)."""

    @property
    def secret(self) -> bool:
        return self.type == "SecureString"
