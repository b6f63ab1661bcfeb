"""The Accounts pages: every account with its session, caps used today, breaker history and
reply rate; create, edit, pause and resume; the suppression list (view, add, remove, import a
CSV). Read-only keys see everything and change nothing (every POST needs the admin role)."""

from __future__ import annotations

from typing import Annotated, Any, Protocol

from fastapi import APIRouter, Path, Query, Request
from starlette.datastructures import FormData, UploadFile
from starlette.responses import RedirectResponse, Response

from waqtor.campaigns import accounts
from waqtor.dashboard import render
from waqtor.dashboard.auth import Act, Look, PageError, Svc, Viewer, codec
from waqtor.dashboard.errors import DashboardRoute
from waqtor.domain.accounts import Tier
from waqtor.runtime.parts import (
    HasAccounts,
    HasClock,
    HasGateways,
    HasPacer,
    HasSettings,
    HasSuppressions,
)


class AccountPages(
    HasSettings, HasClock, HasPacer, HasAccounts, HasSuppressions, HasGateways, Protocol
):
    """What the account pages read and write."""


router = APIRouter(prefix="/admin/queues", route_class=DashboardRoute, include_in_schema=False)

Name = Annotated[str, Path(max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]
SUPPRESSIONS_PAGE = 100
#: The fields the edit form changes, with how each is read from the form.
INT_FIELDS = ("hourlyCap", "dailyCap", "delayMs", "newContactsDailyCap")
FLOAT_FIELDS = ("jitter",)


def _back(request: Request, who: Viewer, to: str, message: str, kind: str = "ok") -> Response:
    response = RedirectResponse(to, status_code=303)
    codec(request).write(response, request, who.session.with_flash(message, kind))
    return response


def _text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def _number(form: FormData, name: str, kind: type[int] | type[float]) -> int | float | None:
    raw = _text(form, name)
    if not raw:
        return None
    try:
        return kind(raw)
    except ValueError:
        raise accounts.AccountError(400, f"{name}: a number, or empty for the default") from None


def _fields(form: FormData) -> dict[str, Any]:
    """The edit form's caps, delay and jitter (empty: the tier's or the service's default)."""
    out: dict[str, Any] = {}
    tier = _text(form, "tier")
    if tier:
        out["tier"] = tier
    for name in INT_FIELDS:
        out[name] = _number(form, name, int)
    for name in FLOAT_FIELDS:
        out[name] = _number(form, name, float)
    return out


async def _row(s: accounts.AccountViews, account: Any) -> dict[str, Any]:
    view = await accounts.view(s, account)
    view.setdefault("sessionState", None)
    repliers, contacts, rate = await accounts.reply_rate(s, account)
    view["replies"] = {"repliers": repliers, "contacts": contacts, "rate": rate}
    return view


@router.get("/accounts")
async def accounts_page(request: Request, who: Look, s: Svc[AccountPages]) -> Response:
    rows = [await _row(s, a) for a in await s.accounts.all()]
    context = {
        "nav": "accounts",
        "rows": rows,
        "tiers": [t.value for t in Tier],
        "providers": accounts.PROVIDERS,
    }
    return render.page(request, "accounts.html", context)


@router.post("/accounts")
async def create_account(request: Request, who: Act, s: Svc[accounts.Edits]) -> Response:
    form = await request.form()
    name = _text(form, "name")
    fields: dict[str, Any] = {"name": name}
    for key in ("provider", "tier", "gateway", "session", "phoneNumberId", "accessTokenEnv"):
        if _text(form, key):
            fields[key] = _text(form, key)
    if fields.get("provider") == "simulator":
        fields.pop("provider")
    try:
        account = await accounts.create(s, accounts.validate(fields))
    except accounts.AccountError as exc:
        return _back(request, who, "/admin/queues/accounts", exc.message, "error")
    return _back(
        request, who, f"/admin/queues/accounts/{account.name}", f"Account {account.name} created."
    )


@router.get("/accounts/{name}")
async def account_page(
    request: Request,
    name: Name,
    who: Look,
    s: Svc[AccountPages],
    cursor: Annotated[int, Query(ge=0, le=2**63 - 1)] = 0,
) -> Response:
    try:
        account = await accounts.get(s, name)
    except accounts.AccountError as exc:
        raise PageError(exc.status, exc.message) from None
    found, nxt, total = await s.suppressions.page(name, cursor, SUPPRESSIONS_PAGE)
    phones = sorted(found)
    context = {
        "nav": "accounts",
        "a": await _row(s, account),
        "history": await s.accounts.breaker_history(name),
        "tiers": [t.value for t in Tier],
        "phones": phones,
        "next_cursor": nxt,
        "total": total,
    }
    return render.page(request, "account.html", context)


async def _act(request: Request, who: Viewer, name: str, done: str, action: Any) -> Response:
    page = f"/admin/queues/accounts/{name}"
    try:
        message = await action()
    except accounts.AccountError as exc:
        return _back(request, who, page, exc.message, "error")
    return _back(request, who, page, message or done)


@router.post("/accounts/{name}/edit")
async def edit_account(request: Request, name: Name, who: Act, s: Svc[accounts.Edits]) -> Response:
    async def change() -> str:
        await accounts.update(s, name, _fields(await request.form()))
        return f"Account {name} saved."

    return await _act(request, who, name, "", change)


@router.post("/accounts/{name}/pause")
async def pause_account(request: Request, name: Name, who: Act, s: Svc[accounts.Rests]) -> Response:
    async def pause() -> str:
        await accounts.pause(s, name)
        return f"Account {name} paused: its campaigns stop before their next message."

    return await _act(request, who, name, "", pause)


@router.post("/accounts/{name}/resume")
async def resume_account(
    request: Request, name: Name, who: Act, s: Svc[accounts.Rests]
) -> Response:
    async def resume() -> str:
        account = await accounts.resume(s, name)
        if account.reducedUntilMs:
            return f"Account {name} resumed at half its caps and double its delay for a while."
        return f"Account {name} resumed."

    return await _act(request, who, name, "", resume)


@router.post("/accounts/{name}/suppressions")
async def add_suppressions(
    request: Request, name: Name, who: Act, s: Svc[AccountPages]
) -> Response:
    async def add() -> str:
        await accounts.get(s, name)
        form = await request.form()
        upload = form.get("file")
        lines = [p.strip() for p in _text(form, "phones").splitlines() if p.strip()]
        added, invalid = 0, list[dict[str, Any]]()
        if isinstance(upload, UploadFile) and upload.filename:
            data = await upload.read(accounts.MAX_IMPORT_BYTES + 1)
            added, invalid = await accounts.import_csv(s, name, data)
        elif not lines:
            raise accounts.AccountError(400, "phones: one number per line, or a CSV file")
        if lines:
            more, bad = await accounts.suppress(s, name, lines)
            added, invalid = added + more, invalid + bad
        note = f"; {len(invalid)} not a phone number" if invalid else ""
        return f"{added} number(s) added to the suppression list{note}."

    return await _act(request, who, name, "", add)


@router.post("/accounts/{name}/suppressions/remove")
async def remove_suppression(
    request: Request, name: Name, who: Act, s: Svc[accounts.Suppresses]
) -> Response:
    async def remove() -> str:
        phone = await accounts.unsuppress(s, name, _text(await request.form(), "phone"))
        return f"{phone} removed from the suppression list."

    return await _act(request, who, name, "", remove)
