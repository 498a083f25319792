"""Plans: create, update, unchanged and prune, decided from the tree and what Parameter Store holds."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from configctl.model import CurrentParameter, DesiredParameter
from configctl.plan import Action, Change, compute

SCOPE = "/config-service/"


def want(name: str, value: str, **fields: Any) -> DesiredParameter:
    return DesiredParameter(f"{SCOPE}{name}", value, source=f"{name}.yaml", **fields)


def have(name: str, value: str, *, version: int = 3, **fields: Any) -> CurrentParameter:
    return CurrentParameter(f"{SCOPE}{name}", value, version=version, **fields)


def actions(plan_changes: Iterable[Change]) -> dict[str, str]:
    return {c.name.removeprefix(SCOPE): c.action.value for c in plan_changes}


def test_missing_parameters_are_created() -> None:
    plan = compute(desired=[want("a/x", "1", type="String")], current={}, scope=SCOPE, prune=False)
    assert actions(plan.changes) == {"a/x": "create"}
    assert plan.has_changes


def test_equal_value_and_type_is_unchanged_and_never_written() -> None:
    current = {f"{SCOPE}a/x": have("a/x", "1", type="String")}
    plan = compute(desired=[want("a/x", "1", type="String")], current=current, scope=SCOPE, prune=False)
    assert actions(plan.changes) == {"a/x": "unchanged"}
    assert plan.writes == ()
    assert not plan.has_changes


def test_value_or_type_change_is_an_update_naming_the_fields() -> None:
    current = {
        f"{SCOPE}a/x": have("a/x", "1", type="String"),
        f"{SCOPE}a/y": have("a/y", "s", type="String"),
    }
    desired = [want("a/x", "2", type="String"), want("a/y", "s", type="SecureString")]
    plan = compute(desired=desired, current=current, scope=SCOPE, prune=False)
    assert [(c.name, c.action, c.fields) for c in plan.changes] == [
        (f"{SCOPE}a/x", Action.UPDATE, ("value",)),
        (f"{SCOPE}a/y", Action.UPDATE, ("type",)),
    ]


def test_metadata_is_compared_only_when_the_tree_sets_it() -> None:
    current = {f"{SCOPE}a/x": have("a/x", "1", type="String", description="old", tier="Standard")}
    unmanaged = compute(desired=[want("a/x", "1", type="String")], current=current, scope=SCOPE, prune=False)
    assert actions(unmanaged.changes) == {"a/x": "unchanged"}
    managed = compute(
        desired=[want("a/x", "1", type="String", description="new", tier="Advanced")],
        current=current,
        scope=SCOPE,
        prune=False,
    )
    assert managed.changes[0].fields == ("description", "tier")


def test_extra_parameters_are_left_alone_unless_pruned() -> None:
    current = {
        f"{SCOPE}a/x": have("a/x", "1", type="String"),
        f"{SCOPE}a/old": have("a/old", "1", type="String"),
    }
    desired = [want("a/x", "1", type="String")]
    kept = compute(desired=desired, current=current, scope=SCOPE, prune=False)
    assert actions(kept.changes) == {"a/x": "unchanged"}
    assert kept.unmanaged == (f"{SCOPE}a/old",)
    pruned = compute(desired=desired, current=current, scope=SCOPE, prune=True)
    assert actions(pruned.changes) == {"a/x": "unchanged", "a/old": "delete"}
    assert pruned.counts() == {"create": 0, "update": 0, "unchanged": 1, "delete": 1}


def test_a_secret_on_either_side_marks_the_change_secret() -> None:
    current = {f"{SCOPE}a/x": have("a/x", "old-secret", type="SecureString")}
    plan = compute(
        desired=[want("a/x", "now-plain", type="String")], current=current, scope=SCOPE, prune=False
    )
    assert plan.changes[0].secret


def test_declared_tags_missing_in_store_are_a_tags_only_update() -> None:
    current = {f"{SCOPE}a/x": have("a/x", "1", type="String", tags=(("team", "a"), ("other", "kept")))}
    same = compute(
        desired=[want("a/x", "1", type="String", tags=(("team", "a"),))],
        current=current,
        scope=SCOPE,
        prune=False,
    )
    assert actions(same.changes) == {"a/x": "unchanged"}
    changed = compute(
        desired=[want("a/x", "1", type="String", tags=(("team", "b"),))],
        current=current,
        scope=SCOPE,
        prune=False,
    )
    assert changed.changes[0].fields == ("tags",)
