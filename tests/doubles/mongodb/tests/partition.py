"""A test-controlled TCP proxy that can partition replica set members from each other.

Design. Members address each other only through the replica set config, so the config hosts are
proxy addresses: member i is known to everybody as `127.0.0.1:<proxy port i>`, and the proxy
forwards to the member's real port. The member's own isSelf still works: mongod (and the double)
recognise themselves by address and port first and, failing that, by connecting to the host and
comparing the `_isSelf` process id, whatever the port (the slow path of mongod's isSelf); through
the proxy that reaches the member itself.

One proxy port per member cannot tell, from the address alone, who is calling: every member
connects from 127.0.0.1 with an ephemeral port. The proxy therefore identifies the *calling
process* of each accepted connection: it finds the client socket (local port = the peer's port,
remote port = the proxy port) in /proc/net/tcp[6], and the member process (or a child of it) that
holds that socket inode among its file descriptors. Every connection thus belongs to one link
(caller member -> target member); connections from anything that is not a member (the tests'
clients) are never cut.

`isolate(i)` black-holes every link between member i and another member, in both directions:
bytes are read and dropped, connections stay open and new ones are accepted, as on a network that
silently loses packets (callers hit their timeouts, nothing is refused). `heal()` lets traffic
through again and closes the connections that lost bytes, since their streams are broken; members
reconnect. Linux only (/proc), loopback only.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from dataclasses import dataclass, field
from pathlib import Path


def _socket_inode(client_port: int, server_port: int) -> str | None:
    """The inode of the socket 127.0.0.1:client_port -> 127.0.0.1:server_port (client side)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text(encoding="ascii").splitlines()[1:]:
                fields = line.split()
                local, remote, inode = fields[1], fields[2], fields[9]
                if (
                    int(local.rsplit(":", 1)[1], 16) == client_port
                    and int(remote.rsplit(":", 1)[1], 16) == server_port
                ):
                    return inode
    return None


def _process_family(pid: int) -> list[int]:
    """`pid` and its children (a wrapper command may start mongod as a child)."""
    out = [pid]
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            children = (task / "children").read_text(encoding="ascii").split()
            out += [int(c) for c in children]
    return out


def _holds_socket(pid: int, inode: str) -> bool:
    wanted = f"socket:[{inode}]"
    with contextlib.suppress(OSError):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                if str(fd.readlink()) == wanted:
                    return True
    return False


@dataclass
class _Connection:
    source: int | None
    target: int
    writers: list[asyncio.StreamWriter] = field(default_factory=list)
    lost_bytes: bool = False


class Partition:
    """Per-member proxy ports and the links between members that a test can cut and heal."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.pids: dict[int, int] = {}
        self.isolated: set[int] = set()
        self.connections: list[_Connection] = []
        self.servers: list[asyncio.base_events.Server] = []

    def _run(self, coro: object, timeout: float = 10) -> object:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)  # type: ignore[arg-type]

    def add_member(self, index: int, target_port: int) -> int:
        """Listen for member `index` (whose server is on `target_port`); returns the proxy port."""
        return int(self._run(self._listen(index, target_port)))  # type: ignore[call-overload]

    def set_process(self, index: int, pid: int) -> None:
        self.pids[index] = pid

    async def _listen(self, index: int, target_port: int) -> int:
        async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await self._serve(index, target_port, reader, writer)

        server = await asyncio.start_server(accept, "127.0.0.1", 0)
        self.servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    def _caller(self, client_port: int, server_port: int) -> int | None:
        inode = _socket_inode(client_port, server_port)
        if inode is None:
            return None
        for index, pid in self.pids.items():
            if any(_holds_socket(p, inode) for p in _process_family(pid)):
                return index
        return None

    def _blocked(self, conn: _Connection) -> bool:
        if conn.source is None or conn.source == conn.target:
            return False
        return conn.source in self.isolated or conn.target in self.isolated

    async def _serve(
        self,
        index: int,
        target_port: int,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        peer = writer.get_extra_info("peername")
        local = writer.get_extra_info("sockname")
        conn = _Connection(self._caller(int(peer[1]), int(local[1])), index, [writer])
        self.connections.append(conn)
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target_port)
        except OSError:
            writer.close()
            return
        conn.writers.append(up_writer)
        await asyncio.gather(
            self._pump(conn, reader, up_writer),
            self._pump(conn, up_reader, writer),
            return_exceptions=True,
        )
        for each in conn.writers:
            each.close()
        with contextlib.suppress(ValueError):
            self.connections.remove(conn)

    async def _pump(
        self, conn: _Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            if self._blocked(conn):
                conn.lost_bytes = True
                continue
            writer.write(data)
            await writer.drain()
        with contextlib.suppress(OSError):
            if writer.can_write_eof():
                writer.write_eof()

    def isolate(self, index: int) -> None:
        """Cut member `index` off from every other member, both directions."""
        self.loop.call_soon_threadsafe(self.isolated.add, index)

    def heal(self) -> None:
        """Reconnect everything; connections that lost bytes are closed (their streams broke)."""

        def run() -> None:
            self.isolated.clear()
            for conn in list(self.connections):
                if conn.lost_bytes:
                    for each in conn.writers:
                        each.transport.abort()

        self.loop.call_soon_threadsafe(run)

    def close(self) -> None:
        async def shutdown() -> None:
            for server in self.servers:
                server.close()
            for conn in list(self.connections):
                for each in conn.writers:
                    each.transport.abort()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        with contextlib.suppress(Exception):
            self._run(shutdown())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()
