"""The start-up, shutdown and fault plumbing that the test doubles share.

Each double builds its own http.server instance and hands it to serve().
serve() publishes the bound port and prints the line that the tests wait for.
It stops on SIGTERM or SIGINT and closes the socket.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from typing import Callable, Optional
from socketserver import BaseServer

LOOPBACK_HOSTS = {"127.0.0.1", "::1", "localhost"}


def require_loopback(host: str, program: str) -> None:
    """Exits with a message unless `host` is a loopback address or localhost."""
    if host not in LOOPBACK_HOSTS:
        raise SystemExit(f"{program}: --host {host} is not a loopback address; use 127.0.0.1 or ::1")


def server_class_for(server_class: type, host: str) -> type:
    """Returns `server_class`, or a subclass of it that binds IPv6 when `host` is an IPv6 address."""
    if ":" not in host:
        return server_class

    class Server6(server_class):
        address_family = socket.AF_INET6

    return Server6


def exchange_entry(handler, status: int, payload: bytes) -> dict:
    """Returns one request and its response as GET /_double/requests lists them."""
    return {
        "method": handler.command,
        "path": handler.path,
        "request_headers": dict(handler.headers.items()),
        "request_body": getattr(handler, "_body_text", ""),
        "status": status,
        "response_body": payload.decode("utf-8", "replace"),
    }


class Faults:
    """Injected failures, set from the command line or POST /_double/faults.

    A subclass maps each fault name to its type in FIELDS and sets the
    defaults. down_seconds starts an outage of that many seconds from now,
    kept as the monotonic time down_until. validate() checks the values
    after an update.
    """

    FIELDS: dict = {}

    def update(self, values: dict) -> None:
        for key, value in values.items():
            if key not in self.FIELDS:
                raise ValueError(f"unknown fault {key!r}; known: {', '.join(sorted(self.FIELDS))}")
            value = self.FIELDS[key](value)
            if key == "down_seconds":
                self.down_until = time.monotonic() + value if value > 0 else 0.0
            else:
                setattr(self, key, value)
            self.after_set(key)
        self.validate()

    def after_set(self, key: str) -> None:
        """Runs after each fault `key` is set."""

    def validate(self) -> None:
        """Raises ValueError for a value out of range."""

    def as_dict(self) -> dict:
        result = {key: getattr(self, key) for key in self.FIELDS if key != "down_seconds"}
        result["down_seconds"] = max(0.0, self.down_until - time.monotonic())
        return result


def write_port_file(path: str, port: int) -> None:
    """Writes `port` to `path` through a temporary file, so a reader never sees half of it."""
    with open(path + ".tmp", "w", encoding="utf-8") as handle:
        handle.write(f"{port}\n")
    os.replace(path + ".tmp", path)


def serve(server: BaseServer, name: str, listening: str, port_file: Optional[str],
          on_stop: Optional[Callable[[], None]] = None) -> int:
    """Serves until SIGTERM or SIGINT and returns the exit status 0.

    `listening` is the text after "<name> listening on". `on_stop` runs after
    the socket is closed.
    """
    if port_file:
        write_port_file(port_file, server.server_address[1])
    print(f"{name} listening on {listening}", flush=True)

    def stop(signum, frame) -> None:  # noqa: ARG001
        # shutdown() waits for serve_forever() to return, so it cannot run
        # in the thread that serve_forever() runs in.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        if on_stop is not None:
            on_stop()
    print(f"{name} stopped", flush=True)
    return 0
