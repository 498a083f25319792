"""AWS access: the standard credential chain, one client per service, errors turned into exit codes.

Credentials are resolved and checked before the plan is read, so a pipeline without credentials fails
with one clear line and never gets as far as a write. Writes use botocore's adaptive retry mode (client
side rate limiting plus backoff), since Parameter Store's write throughput is small and shared.
"""

from __future__ import annotations

from typing import Any

import boto3
import botocore.config
import botocore.exceptions

from configctl.exitcodes import ConfigctlError, ExitCode
from configctl.settings import ConfigctlSettings

MAX_ATTEMPTS = 8


def session_for(settings: ConfigctlSettings) -> boto3.Session:
    try:
        return boto3.Session(profile_name=settings.profile, region_name=settings.region)
    except botocore.exceptions.ProfileNotFound as exc:
        raise ConfigctlError(
            f"AWS profile not found: {exc.kwargs.get('profile')}", exit_code=ExitCode.AWS_ERROR
        ) from None


def require_credentials(session: boto3.Session) -> None:
    """Fail before any request when the credential chain finds nothing."""
    try:
        credentials = session.get_credentials()
    except botocore.exceptions.BotoCoreError as exc:
        raise ConfigctlError(f"AWS credentials unusable: {exc}", exit_code=ExitCode.AWS_ERROR) from None
    if credentials is None:
        raise ConfigctlError(
            "no AWS credentials found (checked environment, shared config/credentials files, SSO, "
            "container and instance roles); set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
            "or use your CI's OIDC role. Nothing was written.",
            exit_code=ExitCode.AWS_ERROR,
        )
    if session.region_name is None:
        raise ConfigctlError(
            "no AWS region: pass --region or set AWS_REGION. Nothing was written.",
            exit_code=ExitCode.AWS_ERROR,
        )


def ssm_client(session: boto3.Session, settings: ConfigctlSettings) -> Any:
    """A Parameter Store client with adaptive retries."""
    config = botocore.config.Config(
        retries={"mode": "adaptive", "max_attempts": MAX_ATTEMPTS},
        connect_timeout=5,
        read_timeout=30,
    )
    return session.client("ssm", endpoint_url=settings.endpoint_url, config=config)


def error_code(exc: BaseException) -> str:
    """The AWS error code of a failure, or the exception's class name."""
    if isinstance(exc, botocore.exceptions.ClientError):
        return str(exc.response.get("Error", {}).get("Code", "ClientError"))
    return type(exc).__name__


def describe_read_error(exc: BaseException, *, what: str) -> ConfigctlError:
    """Turn a failure while reading (before any write) into a clear, exit-coded error."""
    if isinstance(exc, botocore.exceptions.NoCredentialsError | botocore.exceptions.PartialCredentialsError):
        message = f"{what}: AWS credentials are missing or incomplete. Nothing was written."
    elif isinstance(exc, botocore.exceptions.EndpointConnectionError):
        message = (
            f"{what}: cannot reach the AWS endpoint ({exc.kwargs.get('endpoint_url')}). Nothing was written."
        )
    elif isinstance(exc, botocore.exceptions.ClientError):
        detail = exc.response.get("Error", {}).get("Message", "")
        message = f"{what}: {error_code(exc)}: {detail}. Nothing was written."
    else:
        message = f"{what}: {type(exc).__name__}: {exc}. Nothing was written."
    return ConfigctlError(message, exit_code=ExitCode.AWS_ERROR)
