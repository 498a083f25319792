"""The moto server process of the local AWS stack: moto, the change emitter, counting and faults.

Run as its own process (`python -m devstack.aws.local_aws serve`) so that tests, the operator and the config
service never share a GIL or a crash with it. It binds 127.0.0.1 (port 0 picks a free one), installs the
Parameter Store emitter, the Cloud Map patches and the SQS receive patch into moto, puts the control
layer in front, then prints one JSON line `{"host": ..., "port": ..., "pid": ...}` on stdout: the signal
that it is ready.
Everything it writes after that goes to stderr (the caller's log file).

It stops on SIGTERM or SIGINT, and by itself when the process that started it goes away (with
--parent-pid), so a crashed test run does not leave it behind.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time
from types import FrameType
from typing import NoReturn

from devstack.aws import cloudmap as aws_cloudmap
from devstack.aws import emitter as aws_emitter
from devstack.aws import sqs as aws_sqs
from devstack.aws.control import ControlMiddleware, ControlState

_log = logging.getLogger("devstack.aws.server")


def serve(*, host: str, port: int, parent_pid: int | None, verbose: bool) -> NoReturn:
    """Run until told to stop, then end the process."""
    from moto.moto_api._internal.models import moto_api_backend
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("werkzeug").setLevel(logging.INFO if verbose else logging.WARNING)
    aws_emitter.install()
    aws_cloudmap.install()
    aws_sqs.install()

    app = ControlMiddleware(
        DomainDispatcherApplication(create_backend_app),
        state=ControlState(),
        reset_backends=moto_api_backend.reset,
    )
    server = make_server(host, port, app, threaded=True, request_handler=MotoRequestHandler)
    bound_host, bound_port = server.server_address[:2]

    def stop(signum: int, _frame: FrameType | None) -> None:
        _log.info("signal %d: stopping", signum)
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if parent_pid is not None:
        threading.Thread(target=_watch_parent, args=(parent_pid, server.shutdown), daemon=True).start()

    sys.stdout.write(json.dumps({"host": bound_host, "port": bound_port, "pid": os.getpid()}) + "\n")
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    _log.info("moto serving on http://%s:%s", bound_host, bound_port)
    server.serve_forever(poll_interval=0.2)
    server.server_close()
    _log.info("stopped")
    # Leave at once: request threads parked on kept-alive client connections otherwise hold up
    # interpreter shutdown for seconds, and moto has nothing to flush.
    logging.shutdown()
    sys.stderr.flush()
    os._exit(0)


def _watch_parent(parent_pid: int, shutdown: object) -> None:
    """Stop the server once the starting process has gone (its pid no longer our parent)."""
    while os.getppid() == parent_pid:
        time.sleep(1.0)
    _log.info("parent %d gone: stopping", parent_pid)
    if callable(shutdown):
        shutdown()
