"""An ASGI app served by uvicorn on a background thread, on 127.0.0.1 and a free port."""

from __future__ import annotations

import threading
import time
from typing import Any

import uvicorn


class ThreadedServer:
    """Start with :meth:`start` (returns once the port is bound); :meth:`stop` joins the thread."""

    def __init__(self, app: Any, name: str, host: str = "127.0.0.1", port: int = 0, lifespan: str = "auto") -> None:
        self.name = name
        self.host = host
        self.port = port
        self._server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning",
                                                     lifespan=lifespan))
        self._thread = threading.Thread(target=self._server.run, name=name, daemon=True)

    def start(self) -> int:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"the {self.name} did not start")
            time.sleep(0.01)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        return self.port

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout=10)
