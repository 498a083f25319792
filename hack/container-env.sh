#!/usr/bin/env bash
# Makes this machine able to build and run the project's images with podman, once; seconds when done.
#
#   hack/container-env.sh          ensure podman/buildah/runc/debootstrap, the rlimits, the base image
#   hack/container-env.sh --check  only report what is missing (exit 1 if anything is)
#
# Used by `make image` (when Docker is not usable), `make test` (the e2e image test) and `.ci/run`.
# What it does, each step skipped when already done (see /work/shared/PITFALLS.md "Containers"):
#   1. apt-get install podman buildah runc debootstrap containernetworking-plugins, when one is missing.
#      Needs root; otherwise it stops with the command to run.
#   2. default_ulimits in /etc/containers/containers.conf: podman's defaults (nofile 1048576) exceed what
#      these hosts allow ("setrlimit RLIMIT_NOFILE: Operation not permitted").
#   3. The base image localhost/python:3.11-slim-bookworm, made from Debian packages with debootstrap
#      (no container registry is reachable here), labelled with BASE_VERSION below: built once per
#      machine, rebuilt only when BASE_VERSION changes. The release images use the pinned python:3.11-slim
#      digest from the Dockerfile instead; this base only stands in for it where no registry is reachable.
# The runtime is runc: Debian's crun refuses these hosts' hybrid cgroups.
set -euo pipefail

BASE_IMAGE=${CONFIG_REFRESH_BASE_IMAGE:-localhost/python:3.11-slim-bookworm}
# Bump when the recipe below changes: the next run rebuilds the base.
BASE_VERSION=3
BASE_LABEL=io.config-refresh.base-version
PACKAGES=(podman buildah runc debootstrap containernetworking-plugins)
CONTAINERS_CONF=/etc/containers/containers.conf
ULIMITS='default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]'
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

say() { echo "container-env: $*" >&2; }
die() {
  echo "container-env: error: $*" >&2
  exit 1
}

check_only=false
[ "${1:-}" = "--check" ] && check_only=true

is_root() { [ "$(id -u)" -eq 0 ]; }

# ----- 1. packages ---------------------------------------------------------------------------------------
missing=()
for cmd in podman buildah runc debootstrap; do
  command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || missing+=("$cmd")
done
[ -d /usr/lib/cni ] || [ -d /usr/libexec/cni ] || missing+=(containernetworking-plugins)
if [ ${#missing[@]} -gt 0 ]; then
  $check_only && die "missing: ${missing[*]}"
  is_root || die "missing ${missing[*]}; install them as root: sudo apt-get install -y ${PACKAGES[*]} (then rerun)"
  command -v apt-get >/dev/null || die "missing ${missing[*]} and no apt-get: install ${PACKAGES[*]} with your package manager"
  say "installing ${PACKAGES[*]} (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # With the recommended packages (catatonit, fuse-overlayfs, …): the set these machines were checked with.
  apt-get install -y -qq "${PACKAGES[@]}" >/dev/null
fi
export PATH=$PATH:/usr/sbin:/sbin

# ----- 2. rlimits ----------------------------------------------------------------------------------------
if ! grep -qs '^[[:space:]]*default_ulimits' "$CONTAINERS_CONF"; then
  $check_only && die "$CONTAINERS_CONF has no default_ulimits (podman run fails with setrlimit errors)"
  is_root || die "$CONTAINERS_CONF needs, under [containers]: $ULIMITS (write it as root, or rerun as root)"
  say "writing default_ulimits to $CONTAINERS_CONF"
  mkdir -p "$(dirname "$CONTAINERS_CONF")"
  if grep -qs '^\[containers\]' "$CONTAINERS_CONF"; then
    sed -i "/^\[containers\]/a $ULIMITS" "$CONTAINERS_CONF"
  else
    printf '[containers]\n%s\n' "$ULIMITS" >>"$CONTAINERS_CONF"
  fi
fi

# ----- 3. base image -------------------------------------------------------------------------------------
have=$(podman image inspect --format "{{ index .Labels \"$BASE_LABEL\" }}" "$BASE_IMAGE" 2>/dev/null || true)
if [ "$have" != "$BASE_VERSION" ]; then
  $check_only && die "base image $BASE_IMAGE (version $BASE_VERSION) is not built (have: '${have:-none}')"
  is_root || die "building the base image needs root (debootstrap): rerun as root"
  say "building base image $BASE_IMAGE (version $BASE_VERSION) with debootstrap; about a minute"
  started=$SECONDS
  root=$(mktemp -d /var/tmp/config-refresh-base.XXXXXX)
  trap 'rm -rf "$root"' EXIT
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    bookworm "$root" "$MIRROR" >"$root.log" 2>&1 || {
    tail -20 "$root.log" >&2
    die "debootstrap failed (log above)"
  }
  rm -f "$root.log"
  # As the official image: `python` on PATH in /usr/local/bin. Then what a slim image leaves out: apt
  # lists and caches, docs, man pages, locales, and the bytecode of the Python standard library's test
  # suite (Debian ships libpython's tests in a separate package already).
  ln -sf /usr/bin/python3 "$root/usr/local/bin/python"
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/* "$root"/var/cache/debconf/*-old \
    "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/var/log/*
  find "$root/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name 'locale.alias' -exec rm -rf {} +
  tar -C "$root" -c . | podman import --quiet \
    --change "LABEL $BASE_LABEL=$BASE_VERSION" \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python3"]' \
    - "$BASE_IMAGE" >/dev/null
  say "base image $BASE_IMAGE built in $((SECONDS - started)) s"
fi
$check_only && say "ok: podman, runc, rlimits and $BASE_IMAGE (version $BASE_VERSION)"
exit 0
