"""Request-scoped access to the process's services."""

from __future__ import annotations

from fastapi import Request

from waqtor.runtime.services import Services
from waqtor.sending.sender import Sender


async def services(request: Request) -> Services:
    s: Services = request.app.state.services
    return s


async def sender(request: Request) -> Sender:
    snd: Sender = request.app.state.sender
    return snd
