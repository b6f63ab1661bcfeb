"""A WhatsApp provider that sends nothing: it records every message in a Redis outbox.

Shared by all processes, so tests and the chaos harness can count real deliveries across
workers. Fault switches (also in Redis, so every process sees them) make it fail like a real
provider: by class and rate, with latency, or by phone number.

It takes batches (``send_batch``: one request, one outbox write) unless built with
``batch_size=1``, when it takes one message per call like the Cloud API (the per-message
benchmark). Either way the outbox writes of calls made at the same moment are coalesced into
one script call, as a remote server's storage would be: that cost is the provider's, not the
send path's, and each call still carries one message with its own outcome.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from waqtor.providers.base import (
    AmbiguousError,
    Capabilities,
    Health,
    Lookup,
    OutgoingMessage,
    PermanentError,
    Provider,
    ProviderError,
    RateLimitedError,
    SendResult,
    TransientError,
    UnavailableError,
)
from waqtor.store.simulator import SimulatorStore

#: In the attempts hash: an attempt that a lookup declared never sent; it is refused forever.
FENCED = "!fenced"

FAULT_CLASSES = (
    "transient",
    "rate_limited",
    "permanent",
    "ambiguous",
    "unavailable",
    "spam",
    "throttled",
)
_CACHE_S = 0.2  # fault switches reach every process within this time


@dataclass
class Faults:
    """Probabilities (0..1) per fault class, a latency, and outcomes forced per phone."""

    rates: dict[str, float] = field(default_factory=dict)
    latency_ms: int = 0
    phones: dict[str, str] = field(default_factory=dict)
    lookup: bool = True  # off: behave like a provider that cannot settle unknown outcomes

    @classmethod
    def from_hash(cls, raw: dict[str, str], default_latency_ms: int) -> Faults:
        faults = cls(latency_ms=default_latency_ms)
        for name, value in raw.items():
            if name in FAULT_CLASSES:
                faults.rates[name] = float(value)
            elif name == "latency_ms":
                faults.latency_ms = int(value)
            elif name == "lookup":
                faults.lookup = value == "1"
            elif name.startswith("phone:"):
                faults.phones[name[6:]] = value
        return faults

    def to_dict(self) -> dict[str, Any]:
        return {
            "rates": {c: self.rates.get(c, 0.0) for c in FAULT_CLASSES},
            "latencyMs": self.latency_ms,
            "phones": self.phones,
            "lookup": self.lookup,
        }


#: Batches of the simulator in flight per account: they overlap Redis's work on some with the
#: worker's on others. Four measured 5-16 % faster than two, interleaved (bench/README.md).
BATCHES_IN_FLIGHT = 4


def capabilities(batch_size: int, max_in_flight: int) -> Capabilities:
    """Batches: up to ``batch_size`` messages a request, two requests in flight. One message
    per call (``batch_size`` 1): up to ``max_in_flight`` calls in flight."""
    return Capabilities(
        batch_size=batch_size,
        max_in_flight=BATCHES_IN_FLIGHT if batch_size > 1 else max_in_flight,
        lookup=Lookup.FENCED,
    )


class SimulatorProvider(Provider):
    name = "simulator"

    def __init__(
        self,
        store: SimulatorStore,
        *,
        latency_ms: int = 0,
        rng: random.Random | None = None,
        batch_size: int = 1000,
        max_in_flight: int = 100,
    ) -> None:
        self.capabilities = capabilities(batch_size, max_in_flight)
        self.store = store
        self.default_latency_ms = latency_ms
        self._rng = rng or random.Random()
        self._faults = Faults(latency_ms=latency_ms)
        self._faults_at = 0.0
        self._ids = itertools.count()
        self._prefix = uuid.uuid4().hex
        #: Accepted messages waiting for the next coalesced outbox write:
        #: (attempt id, message id, outbox entry, the caller's future).
        self._queued: list[tuple[str, str, bytes, asyncio.Future[str]]] = []
        self._writer: asyncio.Task[None] | None = None
        self._reading: asyncio.Task[None] | None = None

    async def faults(self) -> Faults:
        if time.monotonic() - self._faults_at > _CACHE_S:
            # One read however many calls are waiting for it (not one connection each).
            if self._reading is None:
                self._reading = asyncio.ensure_future(self._read_faults())
            reading = self._reading
            try:
                await asyncio.shield(reading)
            finally:
                if reading.done() and self._reading is reading:
                    self._reading = None
        return self._faults

    async def _read_faults(self) -> None:
        self._faults = Faults.from_hash(await self.store.faults(), self.default_latency_ms)
        self._faults_at = time.monotonic()

    def _pick_fault(self, faults: Faults, phone: str) -> str | None:
        if not faults.phones and not faults.rates:
            return None
        if phone in faults.phones:
            return faults.phones[phone]
        for name in FAULT_CLASSES:
            rate = faults.rates.get(name, 0.0)
            if rate > 0 and self._rng.random() < rate:
                return name
        return None

    def _raise_for(self, fault: str | None) -> None:
        """A fault that refuses the message before it is accepted."""
        if fault == "unavailable":
            raise UnavailableError("sim_unavailable", "simulated provider unavailable")
        if fault == "transient":
            raise TransientError("sim_503", "simulated server error")
        if fault == "rate_limited":
            raise RateLimitedError("sim_429", "simulated rate limit", retry_after_s=1.0)
        if fault == "spam":  # the Cloud API's spam signal, same code
            raise PermanentError("131048", "simulated: spam rate limit hit")
        if fault == "throttled":
            raise RateLimitedError("130429", "simulated: throughput limit", retry_after_s=1.0)
        if fault == "permanent":
            raise PermanentError("sim_invalid_recipient", "simulated: number not on WhatsApp")

    def _entry(self, message: OutgoingMessage, message_id: str, received_ms: int) -> bytes:
        return orjson.dumps(
            {
                "ts": received_ms,
                "account": message.account,
                "phone": message.phone,
                "text": message.text,
                "jobId": message.campaign_id,
                "attemptId": message.attempt_id,
                "messageId": message_id,
            }
        )

    async def send(self, message: OutgoingMessage) -> SendResult:
        received_ms = int(time.time() * 1000)  # when the request reached the "provider"
        if time.monotonic() - self._faults_at > _CACHE_S:
            faults = await self.faults()
        else:  # fresh: no coroutine for each of thousands of calls
            faults = self._faults
        if faults.latency_ms:
            await asyncio.sleep(faults.latency_ms / 1000.0)
        fault = self._pick_fault(faults, message.phone)
        if fault is not None:
            self._raise_for(fault)
        message_id = f"sim-{self._prefix}-{next(self._ids)}"
        landed = asyncio.get_running_loop().create_future()
        entry = self._entry(message, message_id, received_ms)
        self._queued.append((message.attempt_id, message_id, entry, landed))
        if self._writer is None:
            # Runs after every call started at this moment has queued its message.
            self._writer = asyncio.ensure_future(self._write_queued())
        found = await landed
        if found == FENCED:
            raise TransientError("sim_fenced", "refused: this attempt was declared never sent")
        if fault == "ambiguous":
            # Delivered, but the answer is "lost": what a timeout after sending looks like.
            raise AmbiguousError("sim_timeout", "simulated timeout after delivery")
        return SendResult(found)

    async def _write_queued(self) -> None:
        queued, self._queued, self._writer = self._queued, [], None
        try:
            ids = await self._land([(a, m, e) for a, m, e, _ in queued])
        except Exception as exc:  # Redis trouble: each caller sees it, as from its own write
            for *_, landed in queued:
                if not landed.done():
                    landed.set_exception(exc)
            return
        except asyncio.CancelledError:
            for *_, landed in queued:
                landed.cancel()
            raise
        for (*_, landed), found in zip(queued, ids, strict=True):
            if not landed.done():
                landed.set_result(str(found))

    async def send_batch(
        self, messages: Sequence[OutgoingMessage]
    ) -> list[SendResult | ProviderError]:
        """Send several messages in one request, each with its own outcome (in order), like
        a provider's batch endpoint: one latency for all, one outbox write."""
        received_ms = int(time.time() * 1000)  # when the request reached the "provider"
        faults = await self.faults()
        if faults.latency_ms:
            await asyncio.sleep(faults.latency_ms / 1000.0)
        results: list[SendResult | ProviderError | None] = []
        accepted: list[int] = []
        landing: list[tuple[str, str, bytes]] = []
        batch_id = uuid.uuid4().hex
        if not faults.phones and not faults.rates:  # the usual case: every message accepted
            landing = [
                (
                    m.attempt_id,
                    f"sim-{batch_id}-{n}",
                    self._entry(m, f"sim-{batch_id}-{n}", received_ms),
                )
                for n, m in enumerate(messages)
            ]
            ids = await self._land(landing) if landing else []
            return [
                TransientError("sim_fenced", "refused: this attempt was declared never sent")
                if found == FENCED
                else SendResult(str(found))
                for found in ids
            ]
        for n, message in enumerate(messages):
            fault = self._pick_fault(faults, message.phone)
            try:
                self._raise_for(fault)
            except ProviderError as exc:
                results.append(exc)
                continue
            message_id = f"sim-{batch_id}-{n}"
            landing.append(
                (message.attempt_id, message_id, self._entry(message, message_id, received_ms))
            )
            accepted.append(n)
            results.append(
                # Delivered, but the answer is "lost": what a timeout after sending looks like.
                AmbiguousError("sim_timeout", "simulated timeout after delivery")
                if fault == "ambiguous"
                else None
            )
        if accepted:
            ids = await self._land(landing)
            for n, message_id in zip(accepted, ids, strict=True):
                if message_id == FENCED:
                    results[n] = TransientError(
                        "sim_fenced", "refused: this attempt was declared never sent"
                    )
                elif results[n] is None:
                    results[n] = SendResult(str(message_id))
        return [r for r in results if r is not None]

    async def _land(self, messages: list[tuple[str, str, bytes]]) -> list[str]:
        """Each attempt lands at most once, and never after a lookup fenced it.
        ``messages``: (attempt id, message id, outbox entry); one reply each."""
        return await self.store.accept(FENCED, messages)

    async def lookup(self, attempt_id: str) -> str | None:
        if not (await self.faults()).lookup:
            raise NotImplementedError("lookups switched off")
        return await self.store.lookup(attempt_id, FENCED)

    async def health(self) -> Health:
        faults = await self.faults()
        if faults.rates.get("unavailable", 0.0) >= 1.0:
            return Health(False, "simulator switched to unavailable")
        return Health(True, "simulator (no real WhatsApp messages are sent)")

    async def close(self) -> None:
        return None

    # ---- outbox and switches, for the API and tests ----
    async def outbox(self, start: int = 0, limit: int = 100) -> tuple[list[dict[str, Any]], int]:
        rows, total = await self.store.outbox(start, limit)
        return [json.loads(r) for r in rows], total

    async def set_faults(
        self,
        rates: dict[str, float],
        latency_ms: int | None,
        phones: dict[str, str],
        lookup: bool = True,
    ) -> None:
        mapping: dict[str, str] = {name: str(rate) for name, rate in rates.items()}
        if not lookup:
            mapping["lookup"] = "0"
        if latency_ms is not None:
            mapping["latency_ms"] = str(latency_ms)
        for phone, fault in phones.items():
            mapping["phone:" + phone] = fault
        await self.store.set_faults(mapping)
        self._faults_at = 0.0
