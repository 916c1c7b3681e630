"""Toxics: what a proxy does to the bytes of one direction of a connection.

The names, attributes and defaults follow Toxiproxy's, so clients written for it
(toxiproxy-python, the Go and Ruby clients) work unchanged:
latency {latency, jitter} ms · bandwidth {rate} KB/s · slow_close {delay} ms ·
timeout {timeout} ms (0 = forever) · reset_peer {timeout} ms · slicer
{average_size, size_variation, delay µs} · limit_data {bytes}.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from typing import Any

ATTRIBUTES: dict[str, dict[str, int]] = {
    "latency": {"latency": 0, "jitter": 0},
    "bandwidth": {"rate": 0},
    "slow_close": {"delay": 0},
    "timeout": {"timeout": 0},
    "reset_peer": {"timeout": 0},
    "slicer": {"average_size": 0, "size_variation": 0, "delay": 0},
    "limit_data": {"bytes": 0},
}
STREAMS = ("upstream", "downstream")


class ToxicError(ValueError):
    """An invalid toxic definition (answered with HTTP 400)."""


class CloseConnection(Exception):
    """Raised by a toxic to end the connection (``reset`` = abort with RST)."""

    def __init__(self, reset: bool = False) -> None:
        super().__init__("reset" if reset else "close")
        self.reset = reset


@dataclass
class Toxic:
    name: str
    type: str
    stream: str = "downstream"
    toxicity: float = 1.0
    attributes: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_json(cls, body: Any, existing: Toxic | None = None) -> Toxic:
        if not isinstance(body, dict):
            raise ToxicError("toxic must be a JSON object")
        kind = body.get("type", existing.type if existing else None)
        if kind not in ATTRIBUTES:
            raise ToxicError(f"unknown toxic type {kind!r}; known: {sorted(ATTRIBUTES)}")
        stream = body.get("stream", existing.stream if existing else "downstream")
        if stream not in STREAMS:
            raise ToxicError(f"stream must be upstream or downstream, got {stream!r}")
        toxicity = body.get("toxicity", existing.toxicity if existing else 1.0)
        if not isinstance(toxicity, int | float) or not 0 <= toxicity <= 1:
            raise ToxicError(f"toxicity must be a number in [0, 1], got {toxicity!r}")
        attrs = dict(ATTRIBUTES[kind])
        if existing:
            attrs.update(existing.attributes)
        given = body.get("attributes") or {}
        if not isinstance(given, dict):
            raise ToxicError("attributes must be an object")
        for key, value in given.items():
            if key not in attrs:
                raise ToxicError(f"{kind} has no attribute {key!r}; it has {sorted(attrs)}")
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ToxicError(f"attribute {key} must be a non-negative number")
            attrs[key] = int(value)
        name = body.get("name") or (existing.name if existing else f"{kind}_{stream}")
        return cls(str(name), kind, stream, float(toxicity), attrs)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "stream": self.stream,
                "toxicity": self.toxicity, "attributes": dict(self.attributes)}

    def applies(self, rng: random.Random) -> bool:
        return self.toxicity >= 1 or rng.random() < self.toxicity

    async def transform(self, chunk: bytes, state: dict[str, Any]) -> list[bytes]:
        """Apply to one chunk; returns the pieces to forward (may raise CloseConnection)."""
        a = self.attributes
        if self.type == "latency":
            jitter = random.uniform(-a["jitter"], a["jitter"]) if a["jitter"] else 0
            await asyncio.sleep(max(0.0, (a["latency"] + jitter) / 1000))
        elif self.type == "bandwidth" and a["rate"] > 0:
            await asyncio.sleep(len(chunk) / (a["rate"] * 1024))
        elif self.type == "timeout":
            if a["timeout"] > 0:
                await asyncio.sleep(a["timeout"] / 1000)
                raise CloseConnection()
            while self.name in state["toxics"]:  # hold the data until the toxic is removed
                await asyncio.sleep(0.02)
        elif self.type == "reset_peer":
            await asyncio.sleep(a["timeout"] / 1000)
            raise CloseConnection(reset=True)
        elif self.type == "limit_data":
            sent = state.get("sent", 0)
            room = a["bytes"] - sent
            if room <= 0:
                raise CloseConnection()
            state["sent"] = sent + min(room, len(chunk))
            if len(chunk) >= room:
                state["close_after"] = True
                return [chunk[:room]]
        elif self.type == "slicer" and a["average_size"] > 0:
            pieces, pos = [], 0
            while pos < len(chunk):
                size = a["average_size"] + random.randint(-a["size_variation"],
                                                          a["size_variation"])
                size = max(1, size)
                pieces.append(chunk[pos : pos + size])
                pos += size
            state["slice_delay"] = a["delay"] / 1e6
            return pieces
        return [chunk]
