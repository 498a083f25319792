"""The rss row's tracemalloc profile (bench/memory_profile.py) on a child whose allocations are known.

The child runs with the environment the profiled operator gets (PYTHONTRACEMALLOC and the bench-only
sitecustomize hook) and allocates between the snapshots: jmespath's import at the second stage, 5,000
blocks of 1,000 bytes from its own top-level code at the third. The section must attribute them there.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
if str(ROOT) not in sys.path:  # `bench` is a top-level directory, not an installed package
    sys.path.insert(0, str(ROOT))

from bench import memory_profile  # noqa: E402

CHILD = """
import sys
def step():
    print("ready", flush=True)
    sys.stdin.readline()
step()
import jmespath
step()
blob = [bytes(1000) for _ in range(5000)]
step()
"""


def _row(table: list[list[str]], name: str) -> list[str]:
    return next(row for row in table if row[0] == name)


def test_stages_are_attributed_to_the_package_that_allocated(tmp_path: Path) -> None:
    env = {**os.environ, **memory_profile.trace_env(tmp_path, frames=8)}
    stages = []
    with subprocess.Popen(
        [sys.executable, "-c", CHILD], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as child:
        assert child.stdin is not None
        assert child.stdout is not None
        try:
            for stage in memory_profile.STAGES:
                assert child.stdout.readline().strip() == "ready"
                stages.append(memory_profile.take(tmp_path, child.pid, stage, timeout=60))
                child.stdin.write("go\n")
                child.stdin.flush()
            assert child.wait(60) == 0
        finally:
            child.kill()
    assert [stage.facts["frames"] for stage in stages] == [8, 8, 8]

    analysis = memory_profile.analyse(stages, None)
    result = memory_profile.section(analysis, routes=2, instances=10, command="the unit test")
    packages, sites = result.tables
    boto = _row(packages[1], "boto (boto3, botocore, s3transfer, jmespath)")
    assert float(boto[2]) >= 0.1  # MiB imported between the first two snapshots
    stdlib = _row(packages[1], memory_profile.STDLIB)
    assert float(stdlib[4]) >= 5000 * 1000 / 2**20  # the blob, from code outside any package
    total = _row(packages[1], "**traced Python heap, total**")
    grown = sum(
        float(_row(packages[1], group)[4]) for group in [*memory_profile.GROUPS, memory_profile.OTHER]
    )
    assert abs(float(total[4]) - grown - float(stdlib[4])) < 0.5  # the groups add up to the total (rounding)
    assert any(row[0] == "routes indexed" and "jmespath/" in row[2] for row in sites[1])
    blob = [row for row in sites[1] if row[0] == "after the rollouts" and row[1].startswith("`<string>:")]
    assert blob
    assert int(blob[0][5].replace(",", "")) >= 5000
    assert "the unit test" in result.notes[-1]
    assert analysis.group_growth("rollouts")[memory_profile.STDLIB] >= 5000 * 1000
    assert analysis.native("none") > 0  # the interpreter itself is not traced


def test_package_and_group_of_a_source_file() -> None:
    site = "/x/.venv/lib/python3.11/site-packages"
    assert memory_profile.package(f"{site}/grpc/aio/_channel.py") == "grpc"
    assert (
        memory_profile.package("/work/x/operator/refresh_operator/fanout/channels.py") == "refresh_operator"
    )
    assert memory_profile.package("/usr/lib/python3.11/asyncio/sslproto.py") is None
    assert memory_profile.package("<frozen importlib._bootstrap>") is None
    assert memory_profile.group_of("kubernetes_asyncio").startswith("Kubernetes clients")
    assert memory_profile.group_of("botocore").startswith("boto")
    assert memory_profile.group_of("somethingelse") == memory_profile.OTHER
    assert memory_profile.group_of(None) == memory_profile.STDLIB
