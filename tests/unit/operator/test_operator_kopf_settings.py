"""kopf settings the operator depends on to survive an API server outage and come back quickly."""

from __future__ import annotations

import kopf

from refresh_operator.handlers import configure, peerings
from refresh_operator.leadership import Peering


def _configured() -> kopf.OperatorSettings:
    settings = kopf.OperatorSettings()
    configure(settings)
    return settings


def _error_backoffs() -> list[float]:
    backoffs = _configured().networking.error_backoffs
    # kopf also takes one number (the same delay for ever); these tests need the operator's finite list.
    assert not isinstance(backoffs, int | float), backoffs
    return list(backoffs)


def test_watch_retries_outlast_a_control_plane_restart() -> None:
    backoffs = _error_backoffs()
    # kopf stops its watchers, and with them the operator, once the list is used up.
    assert sum(backoffs) >= 20 * 60


def test_watchers_resume_within_ten_seconds_of_the_api_server_returning() -> None:
    assert max(_error_backoffs()) <= 10


def test_progress_is_kept_in_the_projects_own_annotations() -> None:
    settings = _configured()
    assert settings.persistence.finalizer == "kopf.configrefresh.io/finalizer"
    assert settings.posting.loggers is False


def test_the_peering_lifetime_is_the_operators_setting() -> None:
    settings = kopf.OperatorSettings()
    configure(settings, peering_lifetime_seconds=15)
    assert settings.peering.lifetime == 15


def test_the_peering_objects_follow_what_kopf_filled_in_from_the_command_line() -> None:
    settings = kopf.OperatorSettings()
    settings.peering.standalone = True
    assert peerings(settings, ["team-a"]) == []
    settings = kopf.OperatorSettings()
    settings.peering.name, settings.peering.priority, settings.peering.mandatory = "op", 42, True
    settings.peering.clusterwide = False
    assert peerings(settings, ["team-a", "team-b"]) == [
        Peering(name="op", priority=42, namespace="team-a"),
        Peering(name="op", priority=42, namespace="team-b"),
    ]
    settings.peering.clusterwide = True
    assert peerings(settings, None) == [Peering(name="op", priority=42, clusterwide=True)]
