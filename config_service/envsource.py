"""The pydantic-settings base shared by the settings of the three programs (config-service, the operator,
configctl): the environment can be a given mapping instead of `os.environ` (tests, `load_settings(env)`),
and a validation error becomes one line that names the key at fault."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from typing import Any

from pydantic import ValidationError
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource
from pydantic_settings.sources.utils import parse_env_vars

_ENVIRON: ContextVar[Mapping[str, str] | None] = ContextVar("settings_environ", default=None)


@contextlib.contextmanager
def environment(environ: Mapping[str, str] | None) -> Iterator[None]:
    """Within the block, settings read `environ` instead of the process environment (None: the process's)."""
    token = _ENVIRON.set(environ)
    try:
        yield
    finally:
        _ENVIRON.reset(token)


class MappingEnvSource(EnvSettingsSource):
    """pydantic-settings' environment source over `environ` instead of `os.environ`."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return parse_env_vars(
            self._environ, self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str
        )


_MODELS: dict[str, type[BaseSettings]] = {}


class EnvSettings(BaseSettings):
    """Keyword arguments over the environment (see `environment`) over defaults; no dotenv, no secrets dir."""

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        _MODELS[cls.__name__] = cls  # so that an error (titled with the model's name) finds its fields

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        environ = _ENVIRON.get()
        return init_settings, env_settings if environ is None else MappingEnvSource(settings_cls, environ)


def first_problem(error: ValidationError, key_of: Callable[[str], str]) -> str:
    """The first problem of `error` as one line starting with its key (`key_of(field name or alias)`).

    A ValueError raised by a model validator, whose message already names its key, is kept as is."""
    first = error.errors()[0]
    cause = (first.get("ctx") or {}).get("error")
    if isinstance(cause, ValueError) and first["type"] == "value_error" and not first["loc"]:
        return str(cause)
    key = key_of(str(first["loc"][0])) if first["loc"] else "settings"
    if first["type"] == "missing":
        description = _description(error, key, key_of)
        return f"{key} is required" + (f": {description}" if description else "")
    message = str(first["msg"]).removeprefix("Value error, ")
    return f"{key}: {message}, got {first['input']!r}"


def _description(error: ValidationError, key: str, key_of: Callable[[str], str]) -> str | None:
    """The doc of the field read from `key` (by its own variable or an alias), for a missing value."""
    model = _MODELS.get(error.title)
    for name, field in model.model_fields.items() if model is not None else ():
        alias = field.validation_alias
        if key in {key_of(name), str(alias), *getattr(alias, "choices", ())}:
            return field.description
    return None
