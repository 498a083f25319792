"""Request counting and fault injection for the local AWS endpoint, as a WSGI layer in front of moto.

Benchmarks state "Parameter Store calls counted at the local AWS endpoint", and reliability tests need
the endpoint to throttle or fail on cue. Both must happen where the requests land, in the moto process,
and be steered from the test process: so this layer answers a few extra paths itself and passes every
other request to moto.

    GET    /_devstack/health   {"ok": true, "pid": ...}
    GET    /_devstack/counts   {"ssm:GetParameter": 3, ...}  (every AWS request that reached the endpoint)
    DELETE /_devstack/counts   zero the counters
    GET    /_devstack/faults   the faults still armed
    POST   /_devstack/faults   {"action": "ssm:GetParameter", "error": "ThrottlingException", "count": 2,
                                "status": 400, "message": "Rate exceeded"}  (status, message optional)
    DELETE /_devstack/faults   disarm all faults
    POST   /_devstack/reset    wipe every moto backend, the counters and the faults

An action is "<signing service>:<Action>", the service taken from the SigV4 credential scope and the
action from X-Amz-Target (JSON protocols) or the Action form field (query protocols). A faulted request
is counted (it reached the endpoint) and answered with the error shape its protocol uses, so botocore
raises the same ClientError, and retries it the same way, as against AWS. Calls the emitter makes
inside the process never pass through here, so they are never counted.
"""

from __future__ import annotations

import io
import json
import os
import re
import threading
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import parse_qs
from xml.sax.saxutils import escape

CONTROL_PREFIX = "/_devstack/"
_CREDENTIAL_SCOPE = re.compile(r"Credential=[^/]+/\d{8}/[^/]+/([^/]+)/aws4_request")
_DEFAULT_STATUS = {
    "ThrottlingException": 400,
    "Throttling": 400,
    "TooManyUpdates": 400,
    "RequestLimitExceeded": 400,
    "InternalServerError": 500,
    "InternalFailure": 500,
    "ServiceUnavailable": 503,
}
_DEFAULT_MESSAGE = {"ThrottlingException": "Rate exceeded", "Throttling": "Rate exceeded"}

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


@dataclass
class Fault:
    """An error to return instead of calling moto, for the next `remaining` calls of one action."""

    action: str
    error: str
    remaining: int
    status: int
    message: str


class ControlState:
    """Counters and armed faults, shared by the server's request threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._faults: dict[str, deque[Fault]] = {}

    def count(self, action: str) -> None:
        with self._lock:
            self._counts[action] += 1

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def clear_counts(self) -> None:
        with self._lock:
            self._counts.clear()

    def arm(self, fault: Fault) -> None:
        with self._lock:
            self._faults.setdefault(fault.action, deque()).append(fault)

    def faults(self) -> list[dict[str, Any]]:
        with self._lock:
            return [asdict(f) for queue in self._faults.values() for f in queue]

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def take_fault(self, action: str) -> Fault | None:
        """The fault to serve for this call of `action`, consuming one of its remaining uses."""
        with self._lock:
            queue = self._faults.get(action)
            if not queue:
                return None
            fault = queue[0]
            fault.remaining -= 1
            if fault.remaining <= 0:
                queue.popleft()
            return fault


def fault_from_request(payload: dict[str, Any]) -> Fault:
    """Validate a POST /_devstack/faults body."""
    action = str(payload["action"])
    if ":" not in action:
        raise ValueError("action must look like 'ssm:GetParameter'")
    error = str(payload.get("error", "ThrottlingException"))
    count = int(payload.get("count", 1))
    if count < 1:
        raise ValueError("count must be at least 1")
    status = int(payload.get("status") or _DEFAULT_STATUS.get(error, 400))
    message = str(payload.get("message") or _DEFAULT_MESSAGE.get(error, f"Injected {error}"))
    return Fault(action=action, error=error, remaining=count, status=status, message=message)


class ControlMiddleware:
    """WSGI layer: answers /_devstack/*, counts and faults AWS requests, passes the rest to moto."""

    def __init__(self, app: WsgiApp, *, state: ControlState, reset_backends: Callable[[], None]) -> None:
        self._app = app
        self._state = state
        self._reset_backends = reset_backends

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = str(environ.get("PATH_INFO", ""))
        if path.startswith(CONTROL_PREFIX):
            return self._control(environ, start_response, path[len(CONTROL_PREFIX) :].rstrip("/"))
        if path.startswith("/moto-api"):
            return self._app(environ, start_response)
        action, protocol = _identify(environ)
        self._state.count(action)
        fault = self._state.take_fault(action)
        if fault is not None:
            return _error_response(start_response, fault, protocol)
        return self._app(environ, start_response)

    def _control(self, environ: dict[str, Any], start_response: StartResponse, route: str) -> Iterable[bytes]:
        method = str(environ.get("REQUEST_METHOD", "GET"))
        try:
            if route == "health" and method == "GET":
                return _json(start_response, 200, {"ok": True, "pid": os.getpid()})
            if route == "counts" and method == "GET":
                return _json(start_response, 200, self._state.counts())
            if route == "counts" and method == "DELETE":
                self._state.clear_counts()
                return _json(start_response, 200, {})
            if route == "faults" and method == "GET":
                return _json(start_response, 200, {"faults": self._state.faults()})
            if route == "faults" and method == "POST":
                fault = fault_from_request(json.loads(_read_body(environ) or b"{}"))
                self._state.arm(fault)
                return _json(start_response, 200, asdict(fault))
            if route == "faults" and method == "DELETE":
                self._state.clear_faults()
                return _json(start_response, 200, {})
            if route == "reset" and method == "POST":
                self._reset_backends()
                self._state.clear_counts()
                self._state.clear_faults()
                return _json(start_response, 200, {})
        except (KeyError, ValueError, TypeError) as exc:
            return _json(start_response, 400, {"error": f"{type(exc).__name__}: {exc}"})
        return _json(start_response, 404, {"error": f"no control route {method} {route!r}"})


def _identify(environ: dict[str, Any]) -> tuple[str, str]:
    """("service:Action", protocol) of an AWS request; protocol is "json", "query" or "rest"."""
    match = _CREDENTIAL_SCOPE.search(str(environ.get("HTTP_AUTHORIZATION", "")))
    service = match.group(1) if match else "unknown"
    target = str(environ.get("HTTP_X_AMZ_TARGET", ""))
    if target:
        return f"{service}:{target.rsplit('.', 1)[-1]}", "json"
    query = parse_qs(str(environ.get("QUERY_STRING", "")))
    if "Action" in query:
        return f"{service}:{query['Action'][0]}", "query"
    content_type = str(environ.get("CONTENT_TYPE", ""))
    if content_type.startswith("application/x-www-form-urlencoded"):
        body = _read_body(environ)
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        form = parse_qs(body.decode("utf-8", errors="replace"))
        if "Action" in form:
            return f"{service}:{form['Action'][0]}", "query"
    return f"{service}:{environ.get('REQUEST_METHOD', 'GET')}", "rest"


def _read_body(environ: dict[str, Any]) -> bytes:
    length = int(environ.get("CONTENT_LENGTH") or 0)
    stream = environ["wsgi.input"]
    data: bytes = stream.read(length) if length > 0 else b""
    return data


def _error_response(start_response: StartResponse, fault: Fault, protocol: str) -> Iterable[bytes]:
    request_id = str(uuid.uuid4())
    status_line = f"{fault.status} {_reason(fault.status)}"
    if protocol == "json":
        body = json.dumps({"__type": fault.error, "message": fault.message}).encode()
        start_response(
            status_line,
            [
                ("Content-Type", "application/x-amz-json-1.1"),
                ("x-amzn-RequestId", request_id),
                ("x-amzn-ErrorType", fault.error),
                ("Content-Length", str(len(body))),
            ],
        )
        return [body]
    kind = "Receiver" if fault.status >= 500 else "Sender"
    xml = (
        "<ErrorResponse><Error>"
        f"<Type>{kind}</Type><Code>{escape(fault.error)}</Code><Message>{escape(fault.message)}</Message>"
        f"</Error><RequestId>{request_id}</RequestId></ErrorResponse>"
    ).encode()
    start_response(
        status_line,
        [("Content-Type", "text/xml"), ("x-amzn-RequestId", request_id), ("Content-Length", str(len(xml)))],
    )
    return [xml]


def _reason(status: int) -> str:
    return {400: "Bad Request", 500: "Internal Server Error", 503: "Service Unavailable"}.get(status, "Error")


def _json(start_response: StartResponse, status: int, payload: Any) -> Iterable[bytes]:
    body = json.dumps(payload).encode()
    start_response(
        f"{status} {'OK' if status == 200 else _reason(status)}",
        [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
    )
    return [body]
