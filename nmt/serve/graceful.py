"""The HTTP server of `nmt serve`: uvicorn's, with a stop that loses no request on its way in.

uvicorn's own stop on SIGTERM closes the listening socket at once (the kernel resets the
connections still waiting in its backlog) and closes every connection whose request it has not
read yet, though the request's bytes may be in the socket already: under load, the requests of
the last fraction of a second before SIGTERM got "connection reset" instead of an answer
(scripts/serve_overload.py found 163 of them). This server first keeps accepting for
`GRACE_SECONDS` (what is in the backlog or on its way comes in), then stops accepting, lets the
event loop read the requests of the connections it has, and only then does uvicorn's stop:
finish every request it has read, then the app's lifespan (which decodes what is queued).
"""

from __future__ import annotations

import asyncio
import socket

import uvicorn

#: how long a stopping server still accepts connections (those a client made before SIGTERM)
GRACE_SECONDS = 0.5


class GracefulServer(uvicorn.Server):
    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        await asyncio.sleep(GRACE_SECONDS)  # still accepting
        for server in self.servers:
            server.close()
        await asyncio.sleep(0.1)  # the requests of connections just accepted are read
        await super().shutdown(sockets)
