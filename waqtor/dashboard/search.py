"""Finding jobs: by id (exact), or by a phone number among the newest campaigns.

There is no phone index, so a phone search scans recipient lists inside Redis (a Lua script per
campaign, nothing copied out) from the newest campaign back, and stops at a time and size
budget; the page says how far it got.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Protocol

from waqtor.domain.phones import search_digits
from waqtor.engine import valid_job_id
from waqtor.runtime.parts import HasEngine, HasJobIndex, HasLedger


class Searches(HasEngine, HasLedger, HasJobIndex, Protocol):
    """What the job search reads."""


#: Phone search budget: stop after this long, or this many recipients scanned.
BUDGET_S = 2.0
BUDGET_RECIPIENTS = 2_000_000
MAX_HITS = 50
_BATCH = 50


@dataclass(frozen=True)
class PhoneHit:
    campaign: str
    created_ms: int
    indexes: list[int]


@dataclass(frozen=True)
class PhoneSearch:
    digits: str
    hits: list[PhoneHit]
    campaigns_scanned: int
    campaigns_total: int
    complete: bool


def digits_of(text: str) -> str:
    return search_digits(text)


def looks_like_phone(text: str) -> bool:
    stripped = re.sub(r"[\s()+.\-/]", "", text)
    return len(stripped) >= 4 and len(search_digits(stripped)) == len(stripped)


async def job_exists(s: Searches, job_id: str) -> bool:
    if not valid_job_id(job_id):
        return False
    return await s.engine.exists(job_id) or await s.job_index.known(job_id)


async def by_phone(s: Searches, text: str) -> PhoneSearch:
    digits = digits_of(text)
    total = await s.job_index.campaign_count()
    hits: list[PhoneHit] = []
    scanned = recipients = 0
    deadline = time.monotonic() + BUDGET_S
    complete = True
    while scanned < total:
        batch = await s.job_index.newest_campaigns(scanned, _BATCH)
        if not batch:
            break
        for cid, created in batch:
            if time.monotonic() > deadline or recipients > BUDGET_RECIPIENTS:
                complete = False
                break
            size, found = await s.ledger.find_phone(cid, digits, 1000)
            scanned += 1
            recipients += int(size)
            if found:
                hits.append(PhoneHit(cid, created, [int(i) for i in found]))
            if len(hits) >= MAX_HITS:
                complete = scanned >= total
                break
        if not complete or len(hits) >= MAX_HITS:
            break
    return PhoneSearch(digits, hits, scanned, total, complete and scanned >= total)
