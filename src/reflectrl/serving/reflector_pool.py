"""`ReflectorServers`: one managed server per reflector adapter, started on first use and stopped together.

The pipeline asks for a reflector by its adapter folder; a stage that is
already done never asks, so no server is started for it.
"""

from __future__ import annotations

import os
from pathlib import Path

from reflectrl.serving.reflector_server import ReflectorServer, start_reflector_server


class ReflectorServers:
    """Servers of one engine, each in its own folder under `root` (export and server.log)."""

    def __init__(self, engine: str, root: str | os.PathLike, **server_options):
        self.engine = engine
        self.root = Path(root)
        self.server_options = server_options
        self._servers: dict[str, ReflectorServer] = {}

    def spec_for(self, reflector: str | os.PathLike) -> str:
        """The ``served:`` spec of `reflector`'s server, started now if it is not running."""
        key = os.fspath(reflector)
        served = self._servers.get(key)
        if served is None or not served.server.alive():
            if served is not None:
                served.stop()
            served = start_reflector_server(key, self.engine, self.root / Path(key).name, **self.server_options)
            self._servers[key] = served
        return str(served.spec)

    def close(self) -> None:
        for served in self._servers.values():
            served.stop()
        self._servers.clear()

    def __enter__(self) -> ReflectorServers:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
