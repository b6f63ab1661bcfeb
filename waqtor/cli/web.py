"""``waqtor web login ACCOUNT``: link a number to a web account from the terminal (QR code, or
``--phone`` for a pairing code). It takes the account's lease for the pairing, so it refuses
while another process holds the session (re-pair from the dashboard then, through the holder),
and hands the lease back once linked: a worker then holds the session."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from waqtor.config import Settings
from waqtor.providers.web.adapter import PairCode, QrCode
from waqtor.providers.web.hub import NAME


def register(sub: Any, worker_url: Any, settings_factory: Any) -> None:
    p = sub.add_parser("web", help="WhatsApp Web accounts: link a number by QR code")
    verbs = p.add_subparsers(dest="verb", required=True)
    login = verbs.add_parser("login", help="show a QR code here and wait for the phone to link")
    login.add_argument("account")
    login.add_argument("--phone", help="link by pairing code for this number instead")
    login.add_argument("--timeout", type=float, default=180.0, help="seconds to wait")

    def run(args: argparse.Namespace) -> int:
        settings: Settings = settings_factory()
        return asyncio.run(login_(settings, worker_url(settings), args))

    p.set_defaults(func=run)


async def login_(settings: Settings, url: str, args: argparse.Namespace) -> int:
    from waqtor.providers.web.session import WebSession
    from waqtor.runtime.services import build

    s = build(settings, url)
    hub = s.web
    name = args.account
    try:
        account = await s.accounts.get(name, fresh=True)
        if account is None or account.provider != NAME:
            print(f'no web account {name!r}: create it with "provider": "web"', file=sys.stderr)
            return 2
        if not await hub.store.acquire(name, hub.holder_id, settings.web_lease_ms):
            holder = await hub.store.holder(name)
            print(
                f"account {name} is held by {holder}: pair it from the dashboard "
                f"(/admin/queues/accounts/{name}/web), which goes through that process",
                file=sys.stderr,
            )
            return 1
        session: WebSession = await hub.open(name, f"code:{args.phone}" if args.phone else "qr")
        renew = asyncio.ensure_future(_renew(hub, name, settings.web_lease_ms))
        last = ""
        deadline = asyncio.get_running_loop().time() + args.timeout
        try:
            while not session.connected.is_set() and not session.final:
                if asyncio.get_running_loop().time() > deadline:
                    print("timed out waiting for the phone", file=sys.stderr)
                    return 1
                state = session.state
                if state.qr and state.qr != last:
                    last = state.qr
                    _show(QrCode(state.qr))
                if state.pair_code and state.pair_code != last:
                    last = state.pair_code
                    _show(PairCode(state.pair_code))
                await asyncio.sleep(0.2)
        finally:
            renew.cancel()
        if session.final:
            print(f"not linked: {session.state.detail}", file=sys.stderr)
            return 1
        print(f"linked +{session.state.me}; a worker now holds the session")
        return 0
    finally:
        await s.close()  # disconnects and releases the lease


async def _renew(hub: Any, name: str, lease_ms: int) -> None:
    while True:
        await asyncio.sleep(lease_ms / 3000)
        await hub.store.renew(name, hub.holder_id, lease_ms)


def _show(event: QrCode | PairCode) -> None:
    from waqtor.providers.web import qr

    if isinstance(event, QrCode):
        print("\nScan with WhatsApp: Settings > Linked devices > Link a device\n")
        print(qr.terminal(event.code), flush=True)
    else:
        print(f"\nPairing code: {event.code}  (Linked devices > Link with phone number)\n")
