"""Reads from AWS Parameter Store, off the event loop.

Why a thin async wrapper: boto3 is blocking, and a blocking call on the event loop would stall every
reader. Each call runs in `asyncio.to_thread`. Throttling (Parameter Store shares about 40 TPS between
all readers and writers of an account) is absorbed by botocore's `standard` or `adaptive` retry mode
with exponential backoff; the bootstrap adds its own outer backoff on top. Values are decrypted
(`WithDecryption`) and returned as `cache.Entry` objects; nothing here logs a value.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from config_service.cache import Entry, ValueType, utcnow
from config_service.settings import Settings

THROTTLING_CODES = frozenset(
    {"ThrottlingException", "Throttling", "TooManyRequestsException", "RequestLimitExceeded"}
)

_TYPES = {member.value: member for member in ValueType}


def error_code(error: BaseException) -> str | None:
    """The AWS error code of a `ClientError`; None for everything else.

    Only a `ClientError` carries an answer from AWS. A `BotoCoreError` (a read timeout, a refused
    connection) has no answer to read a code from, and some of them have ``response = None``, so this
    never reads ``.response`` from anything but a `ClientError`.
    """
    if isinstance(error, ClientError):
        code = (error.response or {}).get("Error", {}).get("Code")
        return str(code) if code is not None else None
    return None


def is_throttling(error: BaseException) -> bool:
    """Whether a botocore error is Parameter Store saying "slow down"."""
    return error_code(error) in THROTTLING_CODES


def entry_from_parameter(parameter: dict[str, Any], *, loaded_at: datetime | None = None) -> Entry:
    """A cache entry from one item of a GetParameter(s)/GetParametersByPath answer."""
    modified = parameter.get("LastModifiedDate")
    if isinstance(modified, datetime) and modified.tzinfo is None:
        modified = modified.replace(tzinfo=UTC)
    return Entry(
        name=parameter["Name"],
        value=parameter.get("Value", ""),
        value_type=_TYPES.get(parameter.get("Type", "String"), ValueType.STRING),
        version=int(parameter.get("Version", 0)),
        last_modified=modified if isinstance(modified, datetime) else None,
        loaded_at=loaded_at or utcnow(),
    )


class ParameterStore:
    """Async reads of Parameter Store through one boto3 client (boto3 clients are thread-safe)."""

    def __init__(self, settings: Settings, *, client: Any | None = None) -> None:
        self._client = client if client is not None else make_client(settings)

    async def get_parameters_by_path(self, prefix: str) -> list[Entry]:
        """Every parameter under `prefix`, recursively, decrypted, all pages."""
        return await asyncio.to_thread(self._get_by_path, prefix)

    async def get_parameter(self, name: str) -> Entry | None:
        """One parameter, decrypted; None when it does not exist."""
        return await asyncio.to_thread(self._get_one, name)

    async def get_parameters(self, names: Sequence[str]) -> tuple[list[Entry], list[str]]:
        """Up to 10 parameters per call; returns (found, names that do not exist)."""
        return await asyncio.to_thread(self._get_many, list(names))

    def _get_by_path(self, prefix: str) -> list[Entry]:
        paginator = self._client.get_paginator("get_parameters_by_path")
        loaded_at = utcnow()
        entries: list[Entry] = []
        for page in paginator.paginate(Path=prefix, Recursive=True, WithDecryption=True):
            entries.extend(entry_from_parameter(item, loaded_at=loaded_at) for item in page["Parameters"])
        return entries

    def _get_one(self, name: str) -> Entry | None:
        try:
            answer = self._client.get_parameter(Name=name, WithDecryption=True)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ParameterNotFound":
                return None
            raise
        return entry_from_parameter(answer["Parameter"])

    def _get_many(self, names: list[str]) -> tuple[list[Entry], list[str]]:
        found: list[Entry] = []
        missing: list[str] = []
        for start in range(0, len(names), 10):
            answer = self._client.get_parameters(Names=names[start : start + 10], WithDecryption=True)
            found.extend(entry_from_parameter(item) for item in answer["Parameters"])
            missing.extend(answer.get("InvalidParameters", []))
        return found, missing


def make_client(settings: Settings) -> Any:
    """An SSM client with the configured region, endpoint and retry mode."""
    config = Config(
        retries={"mode": settings.aws_retry_mode, "total_max_attempts": settings.aws_max_attempts},
        connect_timeout=5,
        read_timeout=settings.aws_read_timeout_seconds,
    )
    return boto3.session.Session().client(
        "ssm",
        region_name=settings.aws_region,
        endpoint_url=settings.aws_endpoint_url,
        config=config,
    )
