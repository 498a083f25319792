"""podSync's Cloud Map instance ids: unique per (namespace, pod), valid for Cloud Map, readable.

Cloud Map's InstanceId is at most 64 characters of ``[0-9a-zA-Z_/:.@-]`` (RegisterInstance API). Kubernetes
namespaces are up to 63 characters and pod names up to 253, so the readable ``<namespace>.<pod>`` does not
always fit.
"""

from __future__ import annotations

import re

import pytest

from refresh_operator.podsync.model import expected_instance_id, instance_id_for

CLOUD_MAP_INSTANCE_ID = re.compile(r"^[0-9a-zA-Z_/:.@-]+$")


def valid(instance_id: str) -> bool:
    return len(instance_id) <= 64 and CLOUD_MAP_INSTANCE_ID.fullmatch(instance_id) is not None


def test_a_short_name_is_namespace_dot_pod() -> None:
    assert instance_id_for("team-a", "svc-0") == "team-a.svc-0"
    assert instance_id_for("team-a", "svc-0") != instance_id_for("team-b", "svc-0")


def test_a_name_of_exactly_64_characters_is_kept_whole() -> None:
    namespace, pod = "n" * 30, "p" * 33
    assert instance_id_for(namespace, pod) == f"{namespace}.{pod}"


@pytest.mark.parametrize(
    ("namespace", "pod"),
    [
        ("n" * 30, "p" * 34),  # one character too long
        ("n" * 63, "svc-0"),  # the longest namespace
        ("team-a", "p" * 253),  # the longest pod name
        ("n" * 63, "p" * 253),
        ("team-a", "web.v2.svc-0" + "x" * 60),  # dots in a long pod name
    ],
)
def test_a_long_name_is_cut_and_hashed_and_still_valid(namespace: str, pod: str) -> None:
    instance_id = instance_id_for(namespace, pod)
    assert valid(instance_id)
    assert len(instance_id) == 64
    assert instance_id.startswith(f"{namespace}.{pod}"[:51])
    assert re.fullmatch(r"_[0-9a-f]{12}", instance_id[51:])
    assert instance_id_for(namespace, pod) == instance_id  # stable: the same pod keeps its id


def test_long_names_that_share_a_prefix_get_different_ids() -> None:
    long_namespace = "tenant-" + "x" * 56
    ids = {instance_id_for(f"{long_namespace[:62]}{suffix}", "svc-0") for suffix in "ab"} | {
        instance_id_for("team-a", f"{'p' * 80}-{i}") for i in range(100)
    }
    assert len(ids) == 102
    assert all(valid(instance_id) for instance_id in ids)


def test_a_long_name_cannot_take_a_short_names_id() -> None:
    long_id = instance_id_for("team-a", "p" * 80)
    # A pod in the same namespace named after the hashed id: Kubernetes names have no "_", so the
    # readable form never looks like the hashed one.
    assert "_" in long_id
    assert "_" not in instance_id_for("team-a", "p" * 40)


def test_characters_cloud_map_refuses_are_replaced_and_the_hash_keeps_the_id_unique() -> None:
    odd = instance_id_for("team-a", "svc 0")
    assert valid(odd)
    assert odd != instance_id_for("team-a", "svc-0")
    assert odd.startswith("team-a.svc-0_")


def test_the_id_an_instance_should_have_comes_from_its_own_attributes() -> None:
    attributes = {"k8s-namespace": "team-a", "k8s-pod": "svc-0", "managed-by": "config-refresh-operator"}
    assert expected_instance_id(attributes) == "team-a.svc-0"
    assert expected_instance_id({"k8s-pod": "svc-0"}) is None
    assert expected_instance_id({"k8s-namespace": "team-a"}) is None
