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


class LoopbackService:
    """Base of the test servers: subclasses give :meth:`asgi_app`; this starts it on a thread on
    127.0.0.1 (``with Service() as s:`` or :meth:`start` / :meth:`stop`)."""

    service_name = "test server"
    lifespan = "off"
    host = "127.0.0.1"
    port = 0
    _served: ThreadedServer | None = None

    def asgi_app(self) -> Any:
        raise NotImplementedError

    def start(self) -> Any:
        self._served = ThreadedServer(self.asgi_app(), self.service_name, self.host, self.port, self.lifespan)
        self.port = self._served.start()
        return self

    def stop(self) -> None:
        if self._served is not None:
            self._served.stop()

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()
