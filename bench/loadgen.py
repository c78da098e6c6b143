"""A small asyncio HTTP/1.1 load generator for loopback benchmarks (no dependencies).

Each connection is an ``asyncio.Protocol`` with a hand-written response parser (status line,
``content-length`` or chunked bodies), so one request costs a few microseconds of Python, not the
hundreds an HTTP client library spends. It records, per request: when it was *scheduled* (open loop:
latency counts from there, so a slow server cannot hide queueing — no coordinated omission), when it
was sent, when the response ended, and the arrival time of every body segment holding the content
``marker`` (one marker per upstream chunk, see bench/run.py), from which time to first chunk and the
gaps between chunks follow. ``busy`` (CPU seconds / wall seconds of this process) tells whether the
generator itself was near saturation.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable

now = time.perf_counter


@dataclasses.dataclass(slots=True)
class Result:
    scheduled: float
    sent: float
    done: float = 0.0
    status: int = 0
    marks: list[float] = dataclasses.field(default_factory=list)
    error: str = ""

    @property
    def latency(self) -> float:
        return self.done - self.scheduled

    @property
    def first_mark(self) -> float | None:
        return self.marks[0] - self.sent if self.marks else None


@dataclasses.dataclass
class Run:
    results: list[Result]
    wall: float
    cpu: float

    @property
    def ok(self) -> list[Result]:
        return [r for r in self.results if r.status == 200 and not r.error and r.done > 0]

    @property
    def errors(self) -> int:
        return len(self.results) - len(self.ok)

    @property
    def busy(self) -> float:
        return self.cpu / self.wall if self.wall else 0.0


class Connection(asyncio.Protocol):
    """One keep-alive connection, one request at a time."""

    def __init__(self, marker: bytes) -> None:
        self.marker = marker
        self.transport: asyncio.Transport | None = None
        self.result: Result | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.closed = False
        self._reset()

    def _reset(self) -> None:
        self.buf = bytearray()
        self.head_done = False
        self.chunked = False
        self.remaining = 0  # body bytes left (content-length) or bytes left in the current chunk + CRLF
        self.in_chunk = False
        self.tail = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._finish(error=f"connection lost: {exc!r}")

    def send(self, raw: bytes, result: Result) -> asyncio.Future[None]:
        assert self.transport is not None
        self._reset()
        self.result = result
        self.waiter = asyncio.get_running_loop().create_future()
        result.sent = now()
        self.transport.write(raw)
        return self.waiter

    def _finish(self, error: str = "") -> None:
        if self.result is not None:
            self.result.done = now()
            self.result.error = error
        self.result = None
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)
        self.waiter = None

    def data_received(self, data: bytes) -> None:
        at = now()
        result = self.result
        if result is None:
            return
        if self.marker:
            seen = self.tail + data
            for _ in range(seen.count(self.marker)):
                result.marks.append(at)
            self.tail = seen[-(len(self.marker) - 1) :] if len(self.marker) > 1 else b""
        self.buf += data
        if not self.head_done and not self._parse_head(result):
            return
        if self._parse_body():
            self._finish()

    def _parse_head(self, result: Result) -> bool:
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return False
        head = bytes(self.buf[:end]).lower()
        del self.buf[: end + 4]
        result.status = int(head[9:12])
        self.head_done = True
        if b"transfer-encoding: chunked" in head:
            self.chunked = True
        else:
            start = head.find(b"content-length:")
            self.remaining = int(head[start + 15 : head.find(b"\r\n", start) if b"\r\n" in head[start:] else None])
        return True

    def _parse_body(self) -> bool:
        """Consume what the buffer holds; True when the response is complete."""
        if not self.chunked:
            self.remaining -= len(self.buf)
            self.buf.clear()
            return self.remaining <= 0
        buf, pos = self.buf, 0
        while True:
            if self.in_chunk:
                take = min(self.remaining, len(buf) - pos)
                pos += take
                self.remaining -= take
                if self.remaining:
                    break
                self.in_chunk = False
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                break
            size = int(bytes(buf[pos:eol]).split(b";")[0], 16)
            if size == 0:  # last chunk; we never ask for trailers
                if len(buf) >= eol + 4:
                    buf.clear()
                    return True
                break
            pos = eol + 2
            self.in_chunk, self.remaining = True, size + 2
        del buf[:pos]
        return False


async def connect(host: str, port: int, marker: bytes) -> Connection:
    loop = asyncio.get_running_loop()
    _, conn = await loop.create_connection(lambda: Connection(marker), host, port)
    return conn


class Target:
    """Where to send and what: a pre-built request, re-used for every call."""

    def __init__(self, host: str, port: int, raw: bytes, marker: bytes = b"") -> None:
        self.host, self.port, self.raw, self.marker = host, port, raw, marker

    async def call(self, conn: Connection | None, scheduled: float) -> tuple[Connection, Result]:
        if conn is None or conn.closed:
            conn = await connect(self.host, self.port, self.marker)
        result = Result(scheduled=scheduled, sent=0.0)
        await conn.send(self.raw, result)
        if result.error:  # a keep-alive connection the server had closed: retry once on a new one
            conn = await connect(self.host, self.port, self.marker)
            result = Result(scheduled=scheduled, sent=0.0)
            await conn.send(self.raw, result)
        return conn, result


def build_request(*, host: str, port: int, path: str, body: bytes, headers: dict[str, str]) -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"host: {host}:{port}", f"content-length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def closed_loop(target: Target, *, concurrency: int, duration: float, limit: int | None = None) -> Run:
    """``concurrency`` connections sending back to back for ``duration`` seconds (or ``limit`` calls)."""
    results: list[Result] = []
    started, cpu0 = now(), time.process_time()
    deadline = started + duration

    async def worker() -> None:
        conn: Connection | None = None
        while now() < deadline and (limit is None or len(results) < limit):
            conn, result = await target.call(conn, now())
            results.append(result)
        if conn is not None and conn.transport is not None:
            conn.transport.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return Run(results, now() - started, time.process_time() - cpu0)


async def open_loop(target: Target, *, rate: float, concurrency: int, duration: float) -> Run:
    """Requests scheduled at ``rate`` per second for ``duration`` s, at most ``concurrency`` in flight.

    A request whose slot is not free yet waits, and its latency still counts from its scheduled time.
    """
    results: list[Result] = []
    free: asyncio.Queue[Connection | None] = asyncio.Queue()
    for _ in range(concurrency):
        free.put_nowait(None)
    tasks: set[asyncio.Task[None]] = set()
    conns: list[Connection] = []

    async def one(scheduled: float) -> None:
        conn = await free.get()
        conn, result = await target.call(conn, scheduled)
        if conn not in conns:
            conns.append(conn)
        results.append(result)
        free.put_nowait(conn)

    started, cpu0 = now(), time.process_time()
    total = int(rate * duration)
    for i in range(total):
        scheduled = started + i / rate
        delay = scheduled - now()
        if delay > 0.0005:
            await asyncio.sleep(delay)
        task = asyncio.get_running_loop().create_task(one(scheduled))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.wait(tasks, timeout=duration + 30)
    for task in tasks:
        task.cancel()
    for conn in conns:
        if conn.transport is not None:
            conn.transport.close()
    return Run(results, now() - started, time.process_time() - cpu0)


async def hold_streams(
    target: Target, *, count: int, ramp: float, on_all_open: Callable[[], object], timeout: float
) -> tuple[Run, object, int]:
    """Open ``count`` streams over ``ramp`` seconds; once every stream has received its first chunk (or
    ``timeout`` passed) call ``on_all_open`` (in a thread) while they are all open; then wait for them
    all to end. Returns the run, what ``on_all_open`` returned, and how many streams were open then."""
    results = [Result(scheduled=0.0, sent=0.0) for _ in range(count)]
    started, cpu0 = now(), time.process_time()
    deadline = started + timeout

    async def one(i: int, result: Result) -> None:
        await asyncio.sleep(ramp * i / count)
        result.scheduled = now()
        try:
            conn = await connect(target.host, target.port, target.marker)
        except OSError as exc:
            result.error, result.done = repr(exc), now()
            return
        await conn.send(target.raw, result)
        if conn.transport is not None:
            conn.transport.close()

    loop = asyncio.get_running_loop()
    tasks = [loop.create_task(one(i, r)) for i, r in enumerate(results)]
    while now() < deadline and not all(r.marks or r.done for r in results):  # noqa: ASYNC110 (polls plain data)
        await asyncio.sleep(0.05)
    open_now = sum(1 for r in results if r.marks and not r.done)
    measured = await asyncio.to_thread(on_all_open)
    await asyncio.wait(tasks, timeout=max(1.0, deadline - now()))
    for task in tasks:
        task.cancel()
    return Run(results, now() - started, time.process_time() - cpu0), measured, open_now
