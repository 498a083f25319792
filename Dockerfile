# syntax=docker/dockerfile:1
# Images of config-refresh: one build, two targets. `make image` builds both (hack/build-images.sh).
#   docker build -t config-refresh-operator .                          # default target: operator
#   docker build --target config-service -t config-service .
# The release base is python:3.11-slim-bookworm pinned by tag and digest (the BASE_IMAGE default below).
# The digest comes from a registry check published with a public project's ADR, not verified here (no
# registry is reachable from the dev machines): refresh it with
#   docker buildx imagetools inspect python:3.11-slim-bookworm
# Where no registry is reachable, hack/container-env.sh builds a stand-in from Debian's own packages
# (debootstrap: the same Debian release and Python minor version) and `make image` passes it as
#   --build-arg BASE_IMAGE=localhost/python:3.11-slim-bookworm
# checkov:skip=CKV_DOCKER_7: the base is the BASE_IMAGE argument, whose default below is pinned by tag and digest
ARG BASE_IMAGE=python:3.11-slim-bookworm@sha256:2e32f7d302adc1c37428355c1e646897c0c53f4fd60b6a551245fb90ee129f91

# ---------------------------------------------------------------------------------------------------------
# builder: a virtualenv holding the project and the runtime dependencies of its two programs (the core plus
# the `operator` and `service` extras; never `cli` or `dev`), versions from constraints.txt. Every
# dependency ships manylinux wheels, so no compiler is installed here either.
# Dependencies first, in a layer of their own: a source change does not download them again. pip's cache
# is a build cache mount (kept between builds, never in the image).
# ---------------------------------------------------------------------------------------------------------
FROM ${BASE_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/venv
COPY pyproject.toml constraints.txt ./
# What the images never run is removed right after the dependencies are installed (about 150 MB):
# - kubernetes.aio, an asyncio copy of the whole kubernetes client (68 MB; the operator uses the
#   synchronous client on its thread pool), and the test modules shipped inside packages;
# - botocore's API models of services the code never calls: kept are the ones it calls (ssm, sqs,
#   servicediscovery) and the ones credential providers call (sts for IRSA, sso and sso-oidc);
# - type stubs and caches; pip, setuptools and wheel go once the project is installed.
# The bytecode is compiled at build time: the root filesystem is read-only at run time, so Python could
# not cache it and would recompile every module at every start. Hash-based, so copying the files (new
# mtimes or not) never makes it stale.
RUN --mount=type=cache,target=/root/.cache/pip \
    set -eu; \
    python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; extras = p['optional-dependencies']; print('\n'.join(p['dependencies'] + extras['operator'] + extras['service']))" \
       > requirements.txt; \
    /opt/venv/bin/pip install --no-compile --constraint constraints.txt --requirement requirements.txt; \
    site=$(/opt/venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'); \
    rm -rf "$site/kubernetes/aio"; \
    find "$site" -depth -type d \( -name tests -o -name test -o -name __pycache__ \) -exec rm -rf {} +; \
    find "$site" -type f \( -name '*_test.py' -o -name 'test_*.py' -o -name '*.pyi' -o -name '*.pyc' \) -delete; \
    find "$site/botocore/data" -mindepth 1 -maxdepth 1 -type d \
        ! -name ssm ! -name sqs ! -name servicediscovery ! -name sts ! -name sso ! -name sso-oidc \
        -exec rm -rf {} +; \
    /opt/venv/bin/python -m compileall -q -j 0 --invalidation-mode unchecked-hash "$site"
COPY README.md ./
COPY protos/ protos/
COPY operator/ operator/
COPY config_service/ config_service/
COPY configctl/ configctl/
COPY configrefresh_api/ configrefresh_api/
RUN --mount=type=cache,target=/root/.cache/pip \
    set -eu; \
    /opt/venv/bin/pip install --no-compile --no-deps --constraint constraints.txt .; \
    /opt/venv/bin/python -m pip uninstall --quiet --yes pip setuptools wheel; \
    site=$(/opt/venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'); \
    rm -rf "$site"/_distutils_hack "$site"/distutils-precedence.pth; \
    find "$site" -type f -name '*.pyi' -delete; \
    /opt/venv/bin/python -m compileall -q -j 0 --invalidation-mode unchecked-hash \
       "$site/refresh_operator" "$site/config_service" "$site/configctl" "$site/configrefresh" "$site/configrefresh_api"

# ---------------------------------------------------------------------------------------------------------
# runtime: the slim base, the venv copied in, an unprivileged numeric user (the charts set runAsNonRoot).
# The user has a passwd entry because getpass.getuser() (used by kopf for its identity) needs one; its HOME
# is /tmp, the one writable place under the charts' read-only root filesystem (an emptyDir there).
# ---------------------------------------------------------------------------------------------------------
FROM ${BASE_IMAGE} AS runtime
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin app
ENV PATH=/opt/venv/bin:$PATH \
    HOME=/tmp \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
COPY --from=builder /opt/venv /opt/venv
WORKDIR /tmp
USER 10001:10001

# ---------------------------------------------------------------------------------------------------------
# config-service: the reference service (RefreshService 50051, ConfigService 50052, metrics 9102).
# ---------------------------------------------------------------------------------------------------------
FROM runtime AS config-service
LABEL org.opencontainers.image.title="config-service" \
      org.opencontainers.image.source="https://github.com/config-refresh/config-refresh" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV CONFIG_SERVICE_HOST=0.0.0.0
EXPOSE 50051 50052 9102
# For `docker run`: the plaintext health port if set, else the config port (plaintext unless TLS is
# configured); on Kubernetes the chart's gRPC readiness probe does this job (HEALTHCHECK is ignored).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s \
    CMD ["python", "-c", "import os, grpc; from grpc_health.v1 import health_pb2 as h, health_pb2_grpc as g; ch = grpc.insecure_channel('127.0.0.1:' + os.environ.get('CONFIG_SERVICE_HEALTH_PORT', os.environ.get('CONFIG_SERVICE_CONFIG_PORT', '50052'))); r = g.HealthStub(ch).Check(h.HealthCheckRequest(), timeout=3); raise SystemExit(r.status != h.HealthCheckResponse.SERVING)"]
ENTRYPOINT ["config-service"]

# ---------------------------------------------------------------------------------------------------------
# operator (default target, hence last): the kopf operator (metrics 9090, liveness 8080).
# ---------------------------------------------------------------------------------------------------------
FROM runtime AS operator
LABEL org.opencontainers.image.title="config-refresh-operator" \
      org.opencontainers.image.source="https://github.com/config-refresh/config-refresh" \
      org.opencontainers.image.licenses="Apache-2.0"
# Two malloc arenas instead of glibc's 8 per core: the blocking pool's threads each left freed memory in
# an arena of their own (about 7 % more resident memory under a 50 changes/s load test).
ENV MALLOC_ARENA_MAX=2
EXPOSE 8080 9090
# For `docker run`: kopf's liveness endpoint (the default CMD turns it on; the chart probes it too).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=3)"]
ENTRYPOINT ["config-refresh-operator"]
CMD ["--standalone", "--all-namespaces", "--liveness", "http://0.0.0.0:8080/healthz"]
