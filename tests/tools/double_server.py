"""The start-up and shutdown that the test doubles share.

Each double builds its own http.server instance and hands it to serve().
serve() publishes the bound port and prints the line that the tests wait for.
It stops on SIGTERM or SIGINT and closes the socket.
"""

from __future__ import annotations

import os
import signal
import threading
from typing import Callable, Optional
from socketserver import BaseServer


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
