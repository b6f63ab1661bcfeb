"""The body of ``GET /api/queue/jobs?limit=N``, read live and shared by concurrent requests.

Listing 50 jobs reads their states and hashes in one engine script and parses 50 bullmq jobs:
a few ms of CPU, so with 50 polling clients the reads themselves were the bottleneck. Requests
for the same ``limit`` that arrive together share one read (``SingleFlight``: each still gets a
read that started after it arrived) and one JSON encoding.
"""

from __future__ import annotations

from waqtor.api.live_stats import render
from waqtor.api.models import ok
from waqtor.api.single_flight import SingleFlight
from waqtor.campaigns.job_views import Views, job_rows

#: The route's default and largest ``limit``.
DEFAULT_LIMIT, MAX_LIMIT = 50, 1000


class LiveJobs:
    def __init__(self, services: Views) -> None:
        self.services = services
        # One per limit asked for; limits are 1..1000, so this stays small.
        self._flights: dict[int, SingleFlight[bytes]] = {}

    @property
    def reads(self) -> int:
        """Reads started so far, over every limit."""
        return sum(flight.reads for flight in self._flights.values())

    async def encoded(self, limit: int) -> bytes:
        """``{"success": true, "data": {"jobs": [...], "count": n}}`` as JSON."""
        flight = self._flights.get(limit)
        if flight is None:
            flight = self._flights[limit] = SingleFlight(lambda: self._read(limit))
        return await flight.get()

    async def _read(self, limit: int) -> bytes:
        rows = await job_rows(self.services, limit)
        return render(ok({"jobs": rows, "count": len(rows)}))

    async def encoded_page(self, limit: int, offset: int) -> bytes:
        """A later page (``offset`` > 0): rarely asked for, so read on its own."""
        rows = await job_rows(self.services, limit, offset)
        return render(ok({"jobs": rows, "count": len(rows)}))
