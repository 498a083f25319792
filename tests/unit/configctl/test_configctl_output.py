"""Every output mode shows the plan and the apply result, and none of them shows a secret value."""

from __future__ import annotations

import io
import json

import pytest
import yaml

from configctl.apply import ApplyResult, Failure, Written
from configctl.masking import MASK, scrub
from configctl.model import CurrentParameter, DesiredParameter
from configctl.output import Mode, Output, show_apply, show_plan
from configctl.plan import Action, compute

SCOPE = "/config-service/"
SECRET_OLD = "old-S3cret-value"
SECRET_NEW = "new-S3cret-value"


def secret_plan() -> object:
    desired = [
        DesiredParameter(f"{SCOPE}acme/pw", SECRET_NEW, "SecureString", "acme.yaml:pw"),
        DesiredParameter(f"{SCOPE}acme/new_pw", SECRET_NEW, "SecureString", "acme.yaml:new_pw"),
        DesiredParameter(f"{SCOPE}acme/url", "http://b", "String", "acme.yaml:url"),
        DesiredParameter(f"{SCOPE}acme/declassified", "now-public", "String", "acme.yaml:declassified"),
    ]
    current = {
        f"{SCOPE}acme/pw": CurrentParameter(f"{SCOPE}acme/pw", SECRET_OLD, "SecureString", 4),
        f"{SCOPE}acme/url": CurrentParameter(f"{SCOPE}acme/url", "http://a", "String", 2),
        f"{SCOPE}acme/declassified": CurrentParameter(
            f"{SCOPE}acme/declassified", SECRET_OLD, "SecureString", 1
        ),
        f"{SCOPE}acme/gone": CurrentParameter(f"{SCOPE}acme/gone", SECRET_OLD, "SecureString", 9),
    }
    return compute(desired=desired, current=current, scope=SCOPE, prune=True)


def render(mode: Mode) -> str:
    stdout, stderr = io.StringIO(), io.StringIO()
    output = Output(mode, stdout=stdout, stderr=stderr)
    plan = secret_plan()
    show_plan(output, plan)  # type: ignore[arg-type]
    result = ApplyResult(
        written=(Written(f"{SCOPE}acme/pw", Action.UPDATE, 5),),
        failed=Failure(f"{SCOPE}acme/new_pw", Action.CREATE, "ValidationException: bad"),
        not_written=plan.changes[-1:],  # type: ignore[attr-defined]
    )
    show_apply(output, plan, result)  # type: ignore[arg-type]
    return stdout.getvalue() + stderr.getvalue()


@pytest.mark.parametrize("mode", [Mode.TABLE, Mode.PLAIN, Mode.JSON, Mode.YAML])
def test_no_mode_prints_a_secret_value(mode: Mode) -> None:
    text = render(mode)
    assert SECRET_OLD not in text
    assert SECRET_NEW not in text
    assert MASK in text
    assert "http://a" in text
    assert "http://b" in text


def test_plain_diff_reads_as_a_diff() -> None:
    lines = render(Mode.PLAIN).splitlines()
    assert f'~ {SCOPE}acme/url (String v2): "http://a" -> "http://b"' in lines
    assert f"~ {SCOPE}acme/pw (SecureString v4): {MASK} -> {MASK}" in lines
    assert f"+ {SCOPE}acme/new_pw (SecureString) = {MASK}" in lines
    assert f"- {SCOPE}acme/gone (SecureString v9) (was {MASK})" in lines
    assert "Plan for /config-service/: 1 to create, 3 to update, 1 to delete, 0 unchanged." in lines


def test_json_document_parses_and_masks() -> None:
    stdout = io.StringIO()
    output = Output(Mode.JSON, stdout=stdout, stderr=io.StringIO())
    show_plan(output, secret_plan())  # type: ignore[arg-type]
    document = json.loads(stdout.getvalue())
    changes = {c["name"]: c for c in document["plan"]["changes"]}
    assert changes[f"{SCOPE}acme/pw"]["old"] == MASK
    assert changes[f"{SCOPE}acme/pw"]["new"] == MASK
    assert changes[f"{SCOPE}acme/url"]["new"] == "http://b"
    assert changes[f"{SCOPE}acme/declassified"]["old"] == MASK


def test_yaml_document_parses() -> None:
    stdout = io.StringIO()
    output = Output(Mode.YAML, stdout=stdout, stderr=io.StringIO())
    show_plan(output, secret_plan())  # type: ignore[arg-type]
    assert yaml.safe_load(stdout.getvalue())["plan"]["summary"]["delete"] == 1


def test_partial_apply_names_written_failed_and_not_written() -> None:
    text = render(Mode.PLAIN)
    assert f"written: update {SCOPE}acme/pw version 5" in text
    assert f"error: failed: create {SCOPE}acme/new_pw: ValidationException: bad" in text
    assert f"error: not written: delete {SCOPE}acme/gone" in text


def test_scrub_removes_echoed_values_from_aws_messages() -> None:
    message = "1 validation error detected: Value 'hunter2' at 'value' failed to satisfy constraint"
    assert "hunter2" not in scrub(message, values=[])
    assert scrub("contains hunter2 somewhere", values=["hunter2"]) == f"contains {MASK} somewhere"
