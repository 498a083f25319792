#!/usr/bin/env bash
# Builds both images of the Dockerfile: the operator and the config-service targets (`make image`).
#
#   hack/build-images.sh [TAG]     default TAG: the project version from pyproject.toml
#
# Engine: Docker when `docker info` answers (with the Dockerfile's pinned base, python:3.11-slim-bookworm
# by digest: the release images); otherwise podman with the base built from Debian packages by
# hack/container-env.sh (localhost/python:3.11-slim-bookworm: these dev machines reach no registry).
# CONTAINER_ENGINE=docker|podman forces one. Images: config-refresh-operator:TAG and config-service:TAG
# (podman names them localhost/...). Layers and pip's download cache are reused between builds.
set -euo pipefail
cd "$(dirname "$0")/.."

tag=${1:-$(python3 -c "import tomllib; print(tomllib.load(open('pyproject.toml', 'rb'))['project']['version'])")}
engine=${CONTAINER_ENGINE:-}
if [ -z "$engine" ]; then
  if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then engine=docker; else engine=podman; fi
fi

build() { # target image
  local started=$SECONDS
  case "$engine" in
    docker)
      DOCKER_BUILDKIT=1 docker build --target "$1" -t "$2:$tag" .
      ;;
    podman)
      # runc: Debian's crun refuses these hosts' hybrid cgroups. Host network and the host's CA bundle:
      # pip inside the build reaches the package index only that way here.
      podman build --runtime runc --network host --layers --format docker \
        -v /etc/ssl/certs:/etc/ssl/certs:ro \
        --build-arg BASE_IMAGE="${CONFIG_REFRESH_BASE_IMAGE:-localhost/python:3.11-slim-bookworm}" \
        --target "$1" -t "localhost/$2:$tag" .
      ;;
    *)
      echo "build-images: error: CONTAINER_ENGINE must be docker or podman, not '$engine'" >&2
      exit 2
      ;;
  esac
  echo "build-images: $2:$tag ($engine) in $((SECONDS - started)) s" >&2
}

[ "$engine" = podman ] && hack/container-env.sh
build operator config-refresh-operator
build config-service config-service
