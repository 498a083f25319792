"""CONFIG_SERVICE_AWS_MAX_ATTEMPTS counts every call botocore makes for one read, the first included.

botocore's `retries["max_attempts"]` counts retries after the first call: with it, the documented
"attempts per Parameter Store call" was one more than the setting (and 1 was never "no retry").
"""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator

import pytest
from botocore.exceptions import ClientError

from config_service.parameter_store import make_client
from config_service.settings import Settings


class Throttling(http.server.BaseHTTPRequestHandler):
    calls = 0

    def do_POST(self) -> None:
        type(self).calls += 1
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        body = json.dumps({"__type": "ThrottlingException", "message": "slow down"}).encode()
        self.send_response(400)
        self.send_header("Content-Type", "application/x-amz-json-1.1")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def throttling_endpoint() -> Iterator[str]:
    Throttling.calls = 0
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Throttling)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("attempts", [1, 3])
def test_a_throttled_read_is_tried_exactly_the_configured_number_of_times(
    throttling_endpoint: str, attempts: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    settings = Settings(
        aws_endpoint_url=throttling_endpoint,
        aws_region="us-east-1",
        aws_max_attempts=attempts,
        insecure_refresh=True,  # the RefreshService's auth is not what this test is about
    )
    client = make_client(settings)
    with pytest.raises(ClientError) as raised:
        client.get_parameter(Name="/config-service/t/a")
    assert raised.value.response["Error"]["Code"] == "ThrottlingException"
    assert Throttling.calls == attempts
