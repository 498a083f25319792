"""configctl's one settings object: where AWS and Kubernetes are, from flags over the environment.

Each field is declared once here with the variable it falls back to: the AWS SDK's and kubectl's own
(`AWS_REGION`, `AWS_ENDPOINT_URL`, `AWS_PROFILE`, `KUBECONFIG`) or `CONFIGCTL_<FIELD>`. `cli.py` generates
each command's flags for these settings from the fields (`with_settings`), and `load_settings` lays the
flags given over what this model reads from the environment. This is the only configctl module that reads
the environment for settings (`layout` reads `valueFrom: {env: ...}` values, which are data).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import Field, ValidationError
from pydantic_settings import SettingsConfigDict

from config_service.envsource import EnvSettings, environment, first_problem
from configctl.exitcodes import ConfigctlError, ExitCode

ENV_PREFIX = "CONFIGCTL_"


class ConfigctlSettings(EnvSettings):
    """Where configctl reaches AWS (`region`, `endpoint_url`, `profile`) and Kubernetes (the rest)."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_ignore_empty=True,
        frozen=True,
        validate_by_name=True,
        use_attribute_docstrings=True,
    )

    region: str | None = Field(None, validation_alias="AWS_REGION")
    """AWS region (boto3 also falls back to AWS_DEFAULT_REGION and the profile's)."""
    endpoint_url: str | None = Field(None, validation_alias="AWS_ENDPOINT_URL")
    """AWS endpoint override (a local stack)."""
    profile: str | None = Field(None, validation_alias="AWS_PROFILE")
    """AWS shared-config profile."""
    kubeconfig: str | None = Field(None, validation_alias="KUBECONFIG")
    """kubeconfig file (default: ~/.kube/config)."""
    context: str | None = None
    """kubeconfig context (default: the current one)."""
    namespace: str | None = Field(None, json_schema_extra={"short": "-n"})
    """Namespace of the ConfigRoutes/ConfigRefreshes (default: the context's)."""


AWS = ("region", "endpoint_url", "profile")
"""The settings of the commands that reach Parameter Store."""
KUBE = ("kubeconfig", "context", "namespace")
"""The settings of the commands that reach Kubernetes."""


def variable(name: str) -> str:
    """The environment variable a setting falls back to."""
    alias = ConfigctlSettings.model_fields[name].validation_alias
    return alias if isinstance(alias, str) else ENV_PREFIX + name.upper()


def load_settings(env: Mapping[str, str] | None = None, **flags: str | None) -> ConfigctlSettings:
    """The flags given (not None) over the environment (`env`, default the process's) over defaults."""
    given: dict[str, Any] = {name: value for name, value in flags.items() if value is not None}
    try:
        with environment(env):
            return ConfigctlSettings(**given)
    except ValidationError as error:
        problem = first_problem(error, lambda name: f"--{name.replace('_', '-')}")
        raise ConfigctlError(problem, exit_code=ExitCode.USAGE) from None
