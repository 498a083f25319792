"""kopf settings the operator depends on to survive an API server outage and come back quickly."""

from __future__ import annotations

import kopf

from refresh_operator.handlers import configure


def _configured() -> kopf.OperatorSettings:
    settings = kopf.OperatorSettings()
    configure(settings)
    return settings


def test_watch_retries_outlast_a_control_plane_restart() -> None:
    backoffs = list(_configured().networking.error_backoffs)
    # kopf stops its watchers, and with them the operator, once the list is used up.
    assert sum(backoffs) >= 20 * 60


def test_watchers_resume_within_ten_seconds_of_the_api_server_returning() -> None:
    assert max(_configured().networking.error_backoffs) <= 10


def test_progress_is_kept_in_the_projects_own_annotations() -> None:
    settings = _configured()
    assert settings.persistence.finalizer == "kopf.configrefresh.io/finalizer"
    assert settings.posting.loggers is False
