"""``/api/queue/*``: WaQtor's queue management routes."""

from __future__ import annotations

import time
from typing import Annotated, Any, Protocol

from fastapi import APIRouter, Body, Depends, Query, Request, Response

from waqtor.api.deps import Parts
from waqtor.api.errors import REDIS_DOWN, ApiError
from waqtor.api.live_jobs import DEFAULT_LIMIT, MAX_LIMIT, LiveJobs
from waqtor.api.live_stats import LiveStats
from waqtor.api.models import CleanRequest, ok
from waqtor.api.routes_jobs import JobId
from waqtor.campaigns import job_views
from waqtor.campaigns import submission as campaigns
from waqtor.config import redis_label
from waqtor.runtime import heartbeats
from waqtor.runtime.health import account_providers
from waqtor.runtime.parts import (
    HasAccounts,
    HasClock,
    HasEngine,
    HasHeartbeats,
    HasProviders,
    HasReconcileState,
    HasRedisUrl,
    HasSettings,
    HasStore,
)
from waqtor.sending import reconcile


class QueueHealth(
    HasSettings,
    HasRedisUrl,
    HasClock,
    HasEngine,
    HasStore,
    HasAccounts,
    HasHeartbeats,
    HasReconcileState,
    HasProviders,
    Protocol,
):
    """What the health route reads."""


router = APIRouter(prefix="/api/queue", tags=["queue"])

DAY_MS = 24 * 3600 * 1000


async def live_stats(request: Request) -> LiveStats:
    live: LiveStats = request.app.state.live_stats
    return live


@router.get("/stats")
async def stats(live: Annotated[LiveStats, Depends(live_stats)]) -> dict[str, Any]:
    """Job counts, message counts and account alerts, read live. A GET normally never reaches
    this function: ``fast_reads.FastReads`` answers it with the same body."""
    return (await live.get()).body


async def live_jobs(request: Request) -> LiveJobs:
    live: LiveJobs = request.app.state.live_jobs
    return live


# response_model keeps the OpenAPI entry of a dict; the body is JSON encoded once per read.
@router.get("/jobs", response_model=dict[str, Any])
async def jobs(
    live: Annotated[LiveJobs, Depends(live_jobs)],
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    offset: Annotated[
        int, Query(ge=0, le=1_000_000_000, description="Skip this many (paging).")
    ] = 0,
) -> Response:
    """Recent jobs, newest first. A plain GET (no query, or ``limit`` alone) is answered by
    ``fast_reads.FastReads`` with the same body; this function takes the rest."""
    if offset:
        return Response(await live.encoded_page(limit, offset), media_type="application/json")
    return Response(await live.encoded(limit), media_type="application/json")


@router.get("/jobs/{job_id}", responses={404: {}})
async def job(job_id: JobId, s: Parts[job_views.Views]) -> dict[str, Any]:
    view = await s.engine.get(job_id)
    if view is None:
        # A campaign whose job was removed outside waqtor answers from its ledger, as its
        # recipients and report do, until our own clean removes it.
        orphan = await job_views.orphan_detail(s, job_id)
        if orphan is None:
            raise ApiError(404, "Job not found")
        return ok(orphan)
    return ok(await job_views.job_detail(s, view))


@router.post("/pause")
async def pause(s: Parts[HasEngine]) -> dict[str, Any]:
    await s.engine.pause()
    return ok(message="Queue paused: running campaigns stop before their next message")


@router.post("/resume")
async def resume(s: Parts[HasEngine]) -> dict[str, Any]:
    await s.engine.resume()
    return ok(message="Queue resumed")


@router.post("/clean")
async def clean(
    s: Parts[campaigns.Cleans],
    body: Annotated[CleanRequest | None, Body()] = None,
    grace: Annotated[int | None, Query(ge=0, le=10**13)] = None,
) -> dict[str, Any]:
    chosen = (
        grace if grace is not None else (body.grace if body and body.grace is not None else None)
    )
    grace_ms = DAY_MS if chosen is None else chosen
    removed = await campaigns.clean(s, grace_ms)
    return ok(
        {"removed": len(removed), "jobs": removed, "grace": grace_ms},
        message=f"Removed {len(removed)} finished job(s) older than {grace_ms} ms",
    )


@router.get(
    "/health",
    responses={
        503: {
            "description": "Unhealthy: `data` says which part (Redis, workers, provider).",
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
    },
)
async def health(s: Parts[QueueHealth], live: Annotated[LiveStats, Depends(live_stats)]) -> Any:
    from fastapi.responses import JSONResponse

    data: dict[str, Any] = {}
    healthy = True
    started = time.perf_counter()
    try:
        await s.store.ping()
        policy = await s.store.eviction_policy()
        data["redis"] = {
            "ok": True,
            "at": redis_label(s.redis_url),
            "latencyMs": round((time.perf_counter() - started) * 1000, 2),
            "maxmemoryPolicy": policy,
        }
        if policy != "noeviction":
            data["redis"]["warning"] = (
                "maxmemory-policy is not noeviction: queued jobs can be evicted"
            )
        workers = await heartbeats.workers(s)
        alive = sum(1 for w in workers if w["alive"])
        data["workers"] = {"alive": alive, "list": workers}
        if alive == 0:
            healthy = False
        data["queue"] = {"paused": await s.engine.is_paused()}
        counts, data["alerts"] = await live.counts_and_alerts()
        # WaQtor's clients read the job counts right in ``data`` (data.waiting, ...).
        data.update(counts)
        data["reconciler"] = await reconcile.health(s)
    except REDIS_DOWN as exc:
        healthy = False
        data["redis"] = {"ok": False, "at": redis_label(s.redis_url), "error": str(exc)}
    if "redis" in data and data["redis"]["ok"]:
        default = s.providers.default
        provider = await default.health()
        data["provider"] = {"name": default.name, "ok": provider.ok, "detail": provider.detail}
        healthy = healthy and provider.ok
        # Accounts on another provider (the Cloud API): each reports its own health.
        data["accounts"] = await account_providers(s)
        healthy = healthy and all(a["ok"] for a in data["accounts"])
    body = {"success": healthy, "healthy": healthy, "data": data}
    return JSONResponse(body, status_code=200 if healthy else 503)
