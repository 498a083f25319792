"""Fake refresh endpoints: thousands of distinct loopback addresses that answer RefreshService, for the bench.

Real config-service processes do not fit on a 2-core machine by the thousand. `FakeEndpoints(count)`
serves `count` endpoints, each at its own loopback address 127.2.x.y (Linux routes all of 127.0.0.0/8 to
the loopback interface, so 10,000 distinct addresses need no setup), from `processes` child processes:

- `minimal`: a servicer that answers APPLIED. One grpc.aio server per 1,000 endpoints, each endpoint its
  own listening socket on its own address (a server loses calls, CANCELLED, once it holds much more than
  about 1,500 connections here). A client therefore opens one channel and one connection per endpoint, as
  against a real fleet.
- `embedded`: config_service's own refresh path (RefreshServicer + Refresher + ConfigCache, no
  bootstrap), one server and one cache per endpoint.

Plaintext and unauthenticated by default. With `secure_dir` (a directory holding `server.pem`,
`server.key` and `token`) every endpoint serves TLS with config-service's ReloadingCertificate and checks
a bearer token with config-service's AuthInterceptor and token file, as the charts deploy config-service.

Each endpoint is an instance to register in Cloud Map (`instance_id`, `host`, `refresh_port`,
`attributes`), like a ServiceFleet's; the child processes stop when `close()` closes their stdin.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

Kind = Literal["minimal", "embedded"]
PER_SERVER = 1000
"""Endpoints per grpc.aio server (`minimal`)."""

_HACK_DIR = Path(__file__).resolve().parents[2]


def endpoint_host(index: int) -> str:
    """127.2.x.y: 250 addresses per /24, distinct for the first 16,000 endpoints (and on, past 127.2)."""
    return f"127.{2 + index // 64_000}.{(index % 64_000) // 250}.{index % 250 + 1}"


@dataclass(frozen=True)
class Endpoint:
    """One fake instance: what Cloud Map registers for it."""

    instance_id: str
    host: str
    refresh_port: int
    attributes: dict[str, str] = field(default_factory=dict)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.refresh_port}"


class FakeEndpoints(Sequence[Endpoint]):
    """`count` fake RefreshService endpoints at distinct loopback addresses, served by child processes."""

    def __init__(
        self,
        count: int,
        *,
        kind: Kind = "minimal",
        processes: int = 2,
        id_prefix: str = "light",
        attributes: Callable[[int], dict[str, str]] | None = None,
        secure_dir: Path | None = None,
    ) -> None:
        processes = max(1, min(processes, count))
        share = -(-count // processes)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_HACK_DIR), env.get("PYTHONPATH", "")) if p)
        self._processes = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "devstack.services.endpoints",
                    str(first),
                    str(min(share, count - first)),
                    kind,
                    *([str(secure_dir)] if secure_dir is not None else []),
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                env=env,
            )
            for first in range(0, count, share)
        ]
        addresses: list[str] = []
        try:
            for process in self._processes:
                assert process.stdout is not None
                line = process.stdout.readline()
                if not line:
                    raise RuntimeError(f"an endpoint process exited with {process.wait(10)} before serving")
                addresses.extend(json.loads(line))
        except BaseException:
            self.close()
            raise
        self.kind = kind
        self._endpoints = [
            Endpoint(
                instance_id=f"{id_prefix}-{index}",
                host=address.rsplit(":", 1)[0],
                refresh_port=int(address.rsplit(":", 1)[1]),
                attributes=attributes(index) if attributes is not None else {},
            )
            for index, address in enumerate(addresses)
        ]

    def __getitem__(self, index: Any) -> Any:
        return self._endpoints[index]

    def __len__(self) -> int:
        return len(self._endpoints)

    def __iter__(self) -> Iterator[Endpoint]:
        return iter(self._endpoints)

    @property
    def pids(self) -> list[int]:
        """The serving processes (their CPU is the endpoints' side of a measurement)."""
        return [process.pid for process in self._processes]

    def connected(self) -> int:
        """How many of these endpoints hold an established TCP connection right now (their side, from
        /proc/net/tcp and tcp6: gRPC listens on dual-stack sockets, so IPv4 shows there as ::ffff:a.b.c.d)."""
        wanted = {(endpoint.host, endpoint.refresh_port) for endpoint in self._endpoints}
        found: set[tuple[str, int]] = set()
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] != "01":  # ESTABLISHED
                    continue
                address, port = fields[1].split(":")
                if len(address) == 32 and address[:24] != "0000000000000000FFFF0000":
                    continue  # a real IPv6 address
                word = address[-8:]  # the IPv4 address, little-endian
                host = ".".join(str(int(word[i : i + 2], 16)) for i in (6, 4, 2, 0))
                if (host, int(port, 16)) in wanted:
                    found.add((host, int(port, 16)))
        return len(found)

    def close(self) -> None:
        """Stop the serving processes (they exit when their stdin closes)."""
        for process in self._processes:
            if process.stdin is not None and not process.stdin.closed:
                process.stdin.close()
        for process in self._processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
            if process.stdout is not None:
                process.stdout.close()


# ----- the serving side (runs in a child process) -----------------------------------------------------


async def _serve(first: int, count: int, kind: Kind, secure_dir: Path | None = None) -> None:
    """Serve `count` endpoints from index `first` until stdin closes; print their addresses first.
    With `secure_dir`: TLS (server.pem, server.key) and a bearer token (token) from that directory."""
    import grpc

    from configrefresh.v1 import refresh_service_pb2 as pb
    from configrefresh.v1 import refresh_service_pb2_grpc as pb_grpc

    class Applied(pb_grpc.RefreshServiceServicer):
        async def Refresh(self, request: pb.RefreshRequest, context: Any) -> pb.RefreshResponse:
            return pb.RefreshResponse(result=pb.REFRESH_RESULT_APPLIED, applied_version=request.version)

        async def GetState(self, request: pb.GetStateRequest, context: Any) -> pb.GetStateResponse:
            return pb.GetStateResponse()

    def embedded(index: int) -> Any:
        from config_service.cache import ConfigCache
        from config_service.refresh_servicer import RefreshServicer
        from config_service.refresher import Refresher

        cache = ConfigCache()
        refresher = Refresher(cache=cache, store=None, prefixes=("/config-service/",))
        return RefreshServicer(cache=cache, refresher=refresher, instance_id=f"light-{index}")

    interceptors: list[Any] = []
    if secure_dir is not None:
        from config_service.auth import AuthInterceptor, build_authenticator

        authenticator = build_authenticator(
            allowed_identities=(),
            mtls=False,
            token_file=secure_dir / "token",
            reviews=None,
            tokenreview_allowed_users=(),
        )
        assert authenticator is not None
        interceptors = [AuthInterceptor(authenticator)]

    def listen(server: Any, host: str) -> int:
        if secure_dir is None:
            return int(server.add_insecure_port(f"{host}:0"))
        from config_service.tls import ReloadingCertificate

        # One per port, as config-service has one: its initial configuration is handed to one port.
        certificate = ReloadingCertificate(
            cert_file=secure_dir / "server.pem", key_file=secure_dir / "server.key"
        )
        return int(server.add_secure_port(f"{host}:0", certificate.credentials()))

    indexes = list(range(first, first + count))
    groups = (
        [[index] for index in indexes]
        if kind == "embedded"
        else [indexes[start : start + PER_SERVER] for start in range(0, len(indexes), PER_SERVER)]
    )
    servers = []
    addresses = []
    for group in groups:
        server = grpc.aio.server(interceptors=interceptors)
        pb_grpc.add_RefreshServiceServicer_to_server(
            embedded(group[0]) if kind == "embedded" else Applied(), server
        )
        for index in group:
            host = endpoint_host(index)
            addresses.append(f"{host}:{listen(server, host)}")
        await server.start()
        servers.append(server)
    # Each endpoint stands in for a config-service process, which settles its collector once serving
    # (config_service.collector); here one full collection would stall 500 endpoints at once.
    from config_service import collector

    collector.settle()
    print(json.dumps(addresses), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until the parent closes stdin
    await asyncio.gather(*(server.stop(grace=None) for server in servers))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="serve fake refresh endpoints until stdin closes")
    parser.add_argument("first", type=int)
    parser.add_argument("count", type=int)
    parser.add_argument("kind", choices=("minimal", "embedded"))
    parser.add_argument("secure_dir", nargs="?", type=Path, help="TLS and token files (default: plaintext)")
    args = parser.parse_args(argv)
    asyncio.run(_serve(args.first, args.count, args.kind, args.secure_dir))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
