"""``waqtor accounts ...``: manage sender accounts from the command line (same store as the API)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import date
from typing import Any

from pydantic import ValidationError

from waqtor.config import Settings
from waqtor.domain.accounts import GATEWAY_PROVIDERS, Account, caps_on


def register(sub: Any, worker_url: Any, settings_factory: Any) -> None:
    p = sub.add_parser("accounts", help="list, add, pause, resume or remove sender accounts")
    verbs = p.add_subparsers(dest="verb", required=True)
    verbs.add_parser("list", help="every account with its caps in force today")
    add = verbs.add_parser("add", help="create or replace an account")
    add.add_argument("name", help="letters, digits, '.', '_' or '-'")
    add.add_argument(
        "--tier",
        choices=["new", "regular", "trusted", "business"],
        default="new",
        help="sets the default caps (new)",
    )
    add.add_argument("--hourly-cap", type=int, help="overrides the tier's hourly cap")
    add.add_argument("--daily-cap", type=int, help="overrides the tier's daily cap")
    add.add_argument("--delay-ms", type=int, help="gap between two messages (MESSAGE_DELAY)")
    add.add_argument(
        "--no-warmup",
        action="store_true",
        help="full caps at once (default: warm up from 10 a day)",
    )
    add.add_argument(
        "--start-date", type=date.fromisoformat, help="YYYY-MM-DD the warm-up starts (today)"
    )
    add.add_argument("--provider", help="simulator (default), cloud_api, waha, evolution or web")
    add.add_argument("--gateway", help="waha/evolution: the gateway's name (GATEWAY_<NAME>_URL)")
    add.add_argument("--session", help="waha: the session (default 'default'); evolution: instance")
    add.add_argument("--new-contacts-cap", type=int, help="new contacts per 24 h (gateways)")
    add.add_argument("--phone-number-id", help="cloud_api: Meta's phone-number ID")
    add.add_argument("--token-env", help="cloud_api: the WA_TOKEN_* variable holding the token")
    verb_help = {
        "pause": "stop the account's campaigns before their next message",
        "resume": "resume a paused account (after the breaker: half caps, double delay a while)",
        "remove": "delete an account with no messages left (never default)",
    }
    for verb, text in verb_help.items():
        verbs.add_parser(verb, help=text).add_argument("name")
    p.set_defaults(func=lambda args: _run(args, worker_url, settings_factory))


def _run(args: argparse.Namespace, worker_url: Any, settings_factory: Any) -> int:
    settings: Settings = settings_factory()
    return asyncio.run(_verb(args, settings, worker_url(settings)))


async def _verb(args: argparse.Namespace, settings: Settings, url: str) -> int:
    from waqtor.runtime.services import build
    from waqtor.sending.breaker import Breaker

    s = build(settings, url)
    try:
        store = s.accounts
        if args.verb == "list":
            now = s.clock.now_ms()
            for account in await store.all():
                caps = caps_on(account, now)
                state = f"paused ({account.pausedReason})" if account.paused else "ok"
                seen = await s.gateways.session(account.name) if account.gateway else None
                if seen is not None:
                    state += f" session={seen.state}"
                print(
                    f"{account.name:20s} {account.provider or 'simulator':10s} "
                    f"tier={account.tier or '-':8s} "
                    f"hourly={caps.hourly if caps.hourly is not None else '-':>6} "
                    f"daily={caps.daily if caps.daily is not None else '-':>6} {state}"
                )
            return 0
        if args.verb == "add":
            fields: dict[str, Any] = {"name": args.name, "tier": args.tier}
            fields.update(
                hourlyCap=args.hourly_cap,
                dailyCap=args.daily_cap,
                delayMs=args.delay_ms,
                warmup=not args.no_warmup,
                startDate=args.start_date,
                provider=args.provider,
                gateway=args.gateway,
                session=args.session,
                newContactsDailyCap=args.new_contacts_cap,
                phoneNumberId=args.phone_number_id,
                accessTokenEnv=args.token_env,
            )
            try:
                account = Account(**fields)
                problem = _config_problem(settings, account)
                if problem:
                    print(f"waqtor: {problem}", file=sys.stderr)
                    return 2
                account = await store.put(account)
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(p) for p in first["loc"]) or "account"
                print(f"waqtor: {where}: {first['msg']}", file=sys.stderr)
                return 2
            print(json.dumps(account.model_dump(mode="json")))
            return 0
        found = await store.get(args.name, fresh=True)
        if found is None:
            print(f"waqtor: no account {args.name!r}", file=sys.stderr)
            return 1
        if args.verb == "pause":
            await store.put(
                found.model_copy(update={"paused": True, "pausedReason": "paused by an operator"})
            )
        elif args.verb == "resume":
            tripped = bool(found.pausedReason and found.pausedReason.startswith("breaker"))
            await Breaker(s).resume(found, settings.resume_reduced_ms if tripped else 0)
        elif args.verb == "remove":
            if args.name == "default" or await s.pacer.backlog(args.name) > 0:
                print(
                    "waqtor: the default account, or one with messages left, stays", file=sys.stderr
                )
                return 1
            await store.delete(args.name)
            if found.provider == "web":
                await s.web.removed(args.name)  # its session keys go (the holder unlinks it)
        print(f"{args.verb}: {args.name}")
        return 0
    finally:
        await s.close()


def _config_problem(settings: Settings, account: Account) -> str | None:
    """What the API would refuse: a token variable that is not a WA_TOKEN_* one, a gateway
    the environment does not configure."""
    from waqtor.providers import gateway_env

    if account.accessTokenEnv and not settings.token_env_allowed(account.accessTokenEnv):
        return f"token-env: {account.accessTokenEnv} is not a WA_TOKEN_* variable"
    if account.provider in GATEWAY_PROVIDERS and account.gateway:
        try:
            gateway_env.gateway(account.gateway)
        except gateway_env.GatewayConfigError as exc:
            return f"gateway: {exc}"
    return None
