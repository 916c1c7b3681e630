"""Toxics: what a proxy does to the bytes of one direction of a connection.

Names, attributes, defaults and timing follow Toxiproxy 2.x (``toxics/*.go``), so
clients and tests written for it (toxiproxy-python, the Go and Ruby clients) behave
the same here:

- ``latency`` {latency, jitter} ms: each chunk leaves ``latency`` ± ``jitter`` after it
  arrived (chunks in flight overlap; the delay does not add up per chunk);
- ``bandwidth`` {rate} KB/s (1 KB = 1000 bytes): data trickles out in pieces of
  ``rate * 100`` bytes every 100 ms, never in one burst after a long pause;
- ``slow_close`` {delay} ms: the close is passed on ``delay`` after the end of data;
- ``timeout`` {timeout} ms: all data is dropped; the connection is closed ``timeout``
  after the toxic started on it (0 = never), and at once when the toxic is removed;
- ``reset_peer`` {timeout} ms: on the first data, wait ``timeout`` then close with RST;
- ``slicer`` {average_size, size_variation, delay µs}: chunks split by repeated halving
  into pieces of about ``average_size``, ``delay`` between pieces;
- ``limit_data`` {bytes}: the connection closes once that many bytes have passed;
- ``noop``: passes everything.

Deliberate differences (documented in the README): attribute values must be
non-negative integers and unknown attribute names are refused with 400 (upstream's
JSON decoder ignores them silently).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

ATTRIBUTES: dict[str, dict[str, int]] = {
    "noop": {},
    "latency": {"latency": 0, "jitter": 0},
    "bandwidth": {"rate": 0},
    "slow_close": {"delay": 0},
    "timeout": {"timeout": 0},
    "reset_peer": {"timeout": 0},
    "slicer": {"average_size": 0, "size_variation": 0, "delay": 0},
    "limit_data": {"bytes": 0},
}
STREAMS = ("upstream", "downstream")
# Upstream's messages, so a client matching on them works; details follow after ": ".
INVALID_TYPE = "invalid toxic type"
INVALID_STREAM = "stream was invalid, can be either upstream or downstream"
BAD_BODY = "bad request body"


class ToxicError(ValueError):
    """An invalid toxic definition (answered with HTTP 400)."""


class CloseConnection(Exception):
    """Raised by a toxic to end the connection (``reset`` = abort with RST)."""

    def __init__(self, reset: bool = False) -> None:
        super().__init__("reset" if reset else "close")
        self.reset = reset


@dataclass
class Chunk:
    """Data read from one side, with the loop time it arrived (latency counts from it)."""

    data: bytes
    at: float


@dataclass
class Toxic:
    name: str
    type: str
    stream: str = "downstream"
    toxicity: float = 1.0
    attributes: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_json(cls, body: Any) -> Toxic:
        """A new toxic from a create request (``POST /proxies/{p}/toxics``)."""
        if not isinstance(body, dict):
            raise ToxicError(f"{BAD_BODY}: a toxic is a JSON object")
        kind = body.get("type")
        if kind not in ATTRIBUTES:
            raise ToxicError(f"{INVALID_TYPE}: {kind!r}; known: {sorted(ATTRIBUTES)}")
        stream = body.get("stream", "downstream")
        if stream not in STREAMS:
            raise ToxicError(f"{INVALID_STREAM}: got {stream!r}")
        toxic = cls(str(body.get("name") or f"{kind}_{stream}"), kind, stream, 1.0,
                    dict(ATTRIBUTES[kind]))
        return toxic.updated(body)

    def updated(self, body: Any) -> Toxic:
        """This toxic with a PATCH/POST update applied: only ``toxicity`` and
        ``attributes`` change (as upstream: name, type and stream are fixed)."""
        if not isinstance(body, dict):
            raise ToxicError(f"{BAD_BODY}: a toxic is a JSON object")
        toxicity = body.get("toxicity", self.toxicity)
        if isinstance(toxicity, bool) or not isinstance(toxicity, int | float) \
                or not 0 <= toxicity <= 1:
            raise ToxicError(f"{BAD_BODY}: toxicity must be a number in [0, 1], "
                             f"got {toxicity!r}")
        attrs = dict(self.attributes)
        given = body.get("attributes") or {}
        if not isinstance(given, dict):
            raise ToxicError(f"{BAD_BODY}: attributes must be an object")
        for key, value in given.items():
            if key not in attrs:
                raise ToxicError(f"{BAD_BODY}: {self.type} has no attribute {key!r}; "
                                 f"it has {sorted(attrs)}")
            if isinstance(value, bool) or not isinstance(value, int | float) \
                    or value < 0 or value != int(value):
                raise ToxicError(f"{BAD_BODY}: attribute {key} must be a non-negative "
                                 f"integer, got {value!r}")
            attrs[key] = int(value)
        return Toxic(self.name, self.type, self.stream, float(toxicity), attrs)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "stream": self.stream,
                "toxicity": self.toxicity, "attributes": dict(self.attributes)}

    def applies(self, rng: random.Random) -> bool:
        return self.toxicity >= 1 or rng.random() < self.toxicity

    async def pipe(self, chunks: AsyncIterator[Chunk], state: dict[str, Any]
                   ) -> AsyncIterator[Chunk]:
        """This toxic's stage of a direction's chain. ``state`` lives as long as the
        connection direction (bandwidth debt, bytes sent under limit_data)."""
        a = self.attributes
        loop = asyncio.get_running_loop()
        async for chunk in chunks:
            if self.type == "latency":
                delay = a["latency"] + (random.uniform(-a["jitter"], a["jitter"])
                                        if a["jitter"] else 0)
                wait = delay / 1000 - (loop.time() - chunk.at)
                if wait > 0:
                    await asyncio.sleep(wait)
                    chunk = Chunk(chunk.data, chunk.at + wait)
                yield chunk
            elif self.type == "bandwidth" and a["rate"] > 0:
                rate = a["rate"] * 1000  # bytes per second
                data = chunk.data
                state["debt"] = state.get("debt", 0.0) + len(data) / rate
                piece = a["rate"] * 100  # what the rate allows in 100 ms
                while len(data) > piece:
                    await asyncio.sleep(0.1)
                    yield Chunk(data[:piece], chunk.at)
                    data = data[piece:]
                    state["debt"] -= 0.1
                started = loop.time()
                if state["debt"] > 0:
                    await asyncio.sleep(state["debt"])
                state["debt"] -= loop.time() - started
                yield Chunk(data, chunk.at)
            elif self.type == "timeout":
                continue  # dropped; the connection's watcher closes it on time
            elif self.type == "reset_peer":
                await asyncio.sleep(a["timeout"] / 1000)
                raise CloseConnection(reset=True)
            elif self.type == "limit_data":
                room = a["bytes"] - state.get("sent", 0)
                data = chunk.data[:max(room, 0)]
                if data:
                    state["sent"] = state.get("sent", 0) + len(data)
                    yield Chunk(data, chunk.at)
                if a["bytes"] - state.get("sent", 0) <= 0:
                    state["close"] = True
                    return
            elif self.type == "slicer" and a["average_size"] > 0:
                cuts = self._slices(0, len(chunk.data))
                for start, end in zip(cuts[::2], cuts[1::2], strict=True):
                    yield Chunk(chunk.data[start:end], chunk.at)
                    if a["delay"]:
                        await asyncio.sleep(a["delay"] / 1e6)
            else:  # noop, slow_close (acts at the end of data), zero-valued toxics
                yield chunk

    def _slices(self, start: int, end: int) -> list[int]:
        """Upstream's slicer: halve (± variation) until a piece is within
        ``size_variation`` of ``average_size``; returns [start0, end0, start1, ...]."""
        avg, var = self.attributes["average_size"], self.attributes["size_variation"]
        if (end - start) - avg <= var:
            return [start, end]
        mid = start + (end - start) // 2
        if var > 0:
            mid += random.randrange(-var, var)
        mid = min(max(mid, start + 1), end - 1)  # pieces always shrink, so this ends
        return self._slices(start, mid) + self._slices(mid, end)
