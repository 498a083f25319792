#!/usr/bin/env python3
"""Install the lowest versions pyproject.toml admits, and import everything with them.

The ranges in pyproject.toml are a promise to embedders: any version inside them works. The tests run with
the newest versions (constraints.txt), so nothing else checks the bottom of each range; a floor below what
the code or the generated stubs need (the stubs refuse protobuf older than the one that generated them)
would only show up as an ImportError in somebody else's service.

In a throwaway virtualenv this script:

1. installs the project with only its core dependencies, each pinned to its floor (`==` the lowest version
   its specifier admits), and imports the embedding API (config_service and the stubs), checking that none
   of the programs' dependencies (kopf, the Kubernetes clients, typer, rich) came with it;
2. adds the `service`, `operator` and `cli` extras, again at their floors, imports every module of every
   package, and runs each console script's `--help`.

Transitive dependencies resolve freely: only the direct ones are pinned to their floors.
Usage: hack/check-lowest-versions.py [--keep DIR]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
EXTRAS = ("service", "operator", "cli")
# What the distribution is built from: copied out so the build leaves no build/ or *.egg-info behind.
SOURCES = (
    "pyproject.toml",
    "README.md",
    "LICENSE",
    "operator",
    "protos",
    "config_service",
    "configctl",
    "configrefresh_api",
)
# The programs' dependencies, which embedding the cache must not pull.
PROGRAM_ONLY = ("kopf", "kubernetes", "typer", "rich", "aiohttp")

IMPORT_CORE = """
import importlib.util, sys
import config_service.cache, config_service.refresher, config_service.refresh_servicer
import config_service.config_servicer, config_service.examples.embedded
from configrefresh.v1 import config_service_pb2_grpc, refresh_service_pb2_grpc
pulled = [name for name in sys.argv[1:] if importlib.util.find_spec(name) is not None]
if pulled:
    sys.exit(f"the core install pulled the programs' dependencies: {pulled}")
print("core: the embedding API imports; none of", sys.argv[1:], "installed")
"""

IMPORT_ALL = """
import importlib, os, pkgutil
# refresh_operator.podsync.handlers still reads the operator's settings at import (until podSync is
# registered from the composition root, issue 19): give it the two required ones.
os.environ.setdefault("CONFIG_REFRESH_QUEUE_URL", "https://sqs.us-east-1.amazonaws.com/1/q")
os.environ.setdefault("AWS_REGION", "us-east-1")
count = 0
for top in ("config_service", "configctl", "refresh_operator", "configrefresh", "configrefresh_api"):
    package = importlib.import_module(top)
    count += 1
    for info in pkgutil.walk_packages(package.__path__, prefix=top + "."):
        if info.name.endswith(".__main__"):  # runs the program
            continue
        importlib.import_module(info.name)
        count += 1
print(f"all: {count} modules import")
"""


def floor(requirement: Requirement) -> str:
    """`name==lowest` for a specifier with a lower bound (>=, ~=, ==); anything else is a mistake here."""
    for spec in requirement.specifier:
        if spec.operator in (">=", "~=", "=="):
            return f"{requirement.name}=={spec.version}"
    raise SystemExit(f"check-lowest-versions: {requirement} has no lower bound: give it one")


def floors(requirements: list[str]) -> list[str]:
    return [floor(Requirement(text)) for text in requirements]


def run(*argv: str | Path, cwd: Path) -> None:
    shown = [str(a) if "\n" not in str(a) else "<script>" for a in argv]
    print("+", " ".join(shown), flush=True)
    subprocess.run([str(a) for a in argv], check=True, cwd=cwd)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="build the virtualenv here and leave it (for debugging)")
    args = parser.parse_args()

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = floors(project["dependencies"])
    extras = sorted({pin for extra in EXTRAS for pin in floors(project["optional-dependencies"][extra])})

    work = args.keep or Path(tempfile.mkdtemp(prefix="lowest-versions-"))
    try:
        source = work / "src"
        for name in SOURCES:
            if (ROOT / name).is_dir():
                ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
                shutil.copytree(ROOT / name, source / name, ignore=ignore)
            else:
                source.mkdir(exist_ok=True)
                shutil.copy2(ROOT / name, source / name)
        venv = work / "venv"
        run(sys.executable, "-m", "venv", "--clear", venv, cwd=work)
        python = venv / "bin" / "python"
        pip = (python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check")
        # Run from the throwaway directory: the repository's folders must not shadow the installed packages.
        (work / "core.txt").write_text("\n".join(core) + "\n")
        run(*pip, "--constraint", work / "core.txt", source, cwd=work)
        run(python, "-c", IMPORT_CORE, *PROGRAM_ONLY, cwd=work)

        (work / "all.txt").write_text("\n".join(core + extras) + "\n")
        run(*pip, "--constraint", work / "all.txt", f"{source}[{','.join(EXTRAS)}]", cwd=work)
        run(python, "-m", "pip", "check", cwd=work)
        run(python, "-c", IMPORT_ALL, cwd=work)
        for script in ("config-service", "config-refresh-operator", "configctl"):
            run(venv / "bin" / script, "--help", cwd=work)
        print("check-lowest-versions: floors", ", ".join(core + extras), "install and import")
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
