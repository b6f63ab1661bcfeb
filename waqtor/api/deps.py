"""Request-scoped access to the process's services."""

from __future__ import annotations

from typing import Annotated, TypeVar

from fastapi import Depends, Request

from waqtor.runtime.services import Services
from waqtor.sending.sender import Sender


async def services(request: Request) -> Services:
    s: Services = request.app.state.services
    return s


T = TypeVar("T")
#: A route's view of the process's services, narrowed to the parts it declares: ``s:
#: Parts[control.Controls]`` (``waqtor.runtime.parts``). FastAPI injects the whole
#: ``Services``; mypy holds the route to what ``T`` declares.
Parts = Annotated[T, Depends(services)]


async def sender(request: Request) -> Sender:
    snd: Sender = request.app.state.sender
    return snd
