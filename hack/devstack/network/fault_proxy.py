"""A TCP proxy on 127.0.0.1 that can be switched, while clients use it, into a network fault.

Why a proxy and not an injected exception: a read timeout or a reset connection is something botocore
raises from its own socket code (`ReadTimeoutError`, `ConnectionClosedError`, `EndpointConnectionError`,
all `BotoCoreError`s with no AWS answer to read). Only a real socket that misbehaves shows whether the
caller's whole path (botocore's retries, the caller's own retry loop, its log lines) survives them.

Modes, switched at any time with `set_mode` (new connections follow the new mode at once):

- ``pass``: forward both ways to the upstream (the moto server).
- ``blackhole``: accept the connection, read what the client sends, never answer; the client's read
  timeout fires (`ReadTimeoutError`). Held connections are kept open until the mode changes.
- ``reset``: accept, then close with an RST (SO_LINGER 0) before answering; the client sees its connection
  reset (`ConnectionClosedError`).

Switching away from ``blackhole`` or ``pass`` closes the connections held in that mode, as a recovering
network would drop them; keep-alive connections of the client then fail once and are re-opened. `accepted`
counts connections per mode, so a test can wait until its client has actually met the fault.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import struct
import threading
from collections import Counter
from typing import Literal, Self

Mode = Literal["pass", "blackhole", "reset"]
MODES: tuple[Mode, ...] = ("pass", "blackhole", "reset")


class FaultProxy:
    """A threaded TCP proxy from 127.0.0.1:<port> to `upstream` (host, port)."""

    def __init__(self, upstream: tuple[str, int], *, host: str = "127.0.0.1", mode: Mode = "pass") -> None:
        self._upstream = upstream
        self._mode: Mode = mode
        self._lock = threading.Lock()
        self._held: dict[socket.socket, Mode] = {}
        self._accepted: Counter[str] = Counter()
        self._listener = socket.create_server((host, 0))
        self._listener.settimeout(0.2)
        self._closed = threading.Event()
        self.host, self.port = self._listener.getsockname()[:2]
        self._thread = threading.Thread(target=self._accept_loop, name="fault-proxy", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        """The proxy as an HTTP endpoint URL (what `--aws-endpoint-url` takes)."""
        return f"http://{self.host}:{self.port}"

    @property
    def mode(self) -> Mode:
        return self._mode

    def accepted(self, mode: Mode) -> int:
        """How many connections were accepted while in `mode`."""
        with self._lock:
            return self._accepted[mode]

    def set_mode(self, mode: Mode) -> None:
        """Switch the fault; connections held in another mode are closed."""
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; expected one of {MODES}")
        with self._lock:
            self._mode = mode
            stale = [conn for conn, held_in in self._held.items() if held_in != mode]
            for conn in stale:
                del self._held[conn]
        for conn in stale:
            _close(conn)

    def close(self) -> None:
        self._closed.set()
        self._thread.join(timeout=5)
        self._listener.close()
        with self._lock:
            held, self._held = list(self._held), {}
        for conn in held:
            _close(conn)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- internals -----------------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                mode = self._mode
                self._accepted[mode] += 1
                if mode != "reset":
                    self._held[client] = mode
            if mode == "reset":
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                client.close()
            elif mode == "blackhole":
                threading.Thread(target=self._swallow, args=(client,), daemon=True).start()
            else:
                threading.Thread(target=self._forward, args=(client,), daemon=True).start()

    def _release(self, conn: socket.socket) -> None:
        with self._lock:
            self._held.pop(conn, None)
        _close(conn)

    def _swallow(self, client: socket.socket) -> None:
        """Read and drop everything until the client or `set_mode` closes the connection."""
        try:
            while client.recv(65536):
                pass
        except OSError:
            pass
        finally:
            self._release(client)

    def _forward(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self._upstream, timeout=5)
        except OSError:
            self._release(client)
            return
        upstream.settimeout(None)
        try:
            with selectors.DefaultSelector() as selector:
                selector.register(client, selectors.EVENT_READ, upstream)
                selector.register(upstream, selectors.EVENT_READ, client)
                while not self._closed.is_set():
                    for key, _ in selector.select(timeout=0.2):
                        source = key.fileobj
                        assert isinstance(source, socket.socket)
                        data = source.recv(65536)
                        if not data:
                            return
                        key.data.sendall(data)
        except (OSError, ValueError):  # ValueError: set_mode closed a socket while it was registered
            pass
        finally:
            _close(upstream)
            self._release(client)


def _close(conn: socket.socket) -> None:
    with contextlib.suppress(OSError):
        conn.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        conn.close()
