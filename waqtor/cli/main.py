"""``waqtor serve`` (API + worker, and its own Redis if none is configured),
``waqtor worker`` (extra worker processes, on any machine that reaches the same Redis), and
verbs that talk to a running service: send, jobs, job, pause, resume, cancel, report."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import signal
import sys
from typing import Any

import uvloop

from waqtor.config import ConfigError, Settings, load_or_create_key, redis_label
from waqtor.runtime import shutdown
from waqtor.runtime.redis_server import BundledRedis, RedisServerError
from waqtor.store import server

log = logging.getLogger("waqtor")


def _settings() -> Settings:
    try:
        settings = Settings()
        settings.api_keys()
        settings.readonly_keys()
        settings.external_redis_url()  # REDIS_SENTINELS without a master name, a bad URL
    except (ConfigError, ValueError) as exc:
        sys.exit(f"waqtor: configuration error: {exc}")
    return settings


async def check_redis(url: str) -> str | None:
    """None if Redis answers; otherwise a one-line reason. Warns on a dangerous eviction policy."""
    error, policy = await server.probe(url)
    if error is not None:
        return f"Redis unavailable at {redis_label(url)}: {error}"
    if policy not in ("noeviction", "unknown"):
        log.warning(
            "!!! Redis at %s has maxmemory-policy=%s. Under memory pressure Redis will "
            "silently DELETE queued jobs and ledgers. Set maxmemory-policy noeviction. !!!",
            redis_label(url),
            policy,
        )
    return None


async def _check(settings: Settings, url: str) -> int:
    reason = await check_redis(url)
    if reason:
        print(f"unhealthy: {reason}")
        return 1
    from waqtor.runtime.health import account_providers
    from waqtor.runtime.services import build

    services = build(settings, url)
    try:
        default = services.providers.default
        health = await default.health()
        accounts = await account_providers(services)
    finally:
        await services.close()
    if not health.ok:
        print(f"unhealthy: provider {default.name}: {health.detail}")
        return 1
    for bad in (a for a in accounts if not a["ok"]):
        print(f"unhealthy: account {bad['account']}: {bad['detail']}")
        return 1
    print(f"ok: Redis at {redis_label(url)}, provider {default.name}")
    return 0


def _worker_url(settings: Settings) -> str:
    url = settings.external_redis_url()
    if url:
        return url
    if settings.bundled_socket.exists():
        return f"unix://{settings.bundled_socket}"
    sys.exit(
        "waqtor: no REDIS_URL set and no bundled Redis at "
        f"{settings.bundled_socket}: start `waqtor serve` first or set REDIS_URL"
    )


# ---------------- serve ----------------
def serve(args: argparse.Namespace) -> int:
    import uvicorn

    from waqtor.cli.app import create_app
    from waqtor.runtime import logs

    settings = _settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    logs.setup(settings.log_level, settings.data_dir / "logs", settings.log_format)
    bundled: BundledRedis | None = None
    url = settings.external_redis_url()
    if url is None:
        bundled = BundledRedis(settings)
        if args.check and not bundled.socket.exists():
            print(f"unhealthy: bundled Redis is not running ({bundled.socket})")
            return 1
        if not args.check:
            try:
                bundled.start()
            except RedisServerError as exc:
                print(f"waqtor: {exc}", file=sys.stderr)
                return 1
        url = bundled.url
    if args.check:
        return asyncio.run(_check(settings, url))
    keys, generated = load_or_create_key(settings)
    if generated:
        print(
            "\n  A new API key was generated and stored in "
            f"{settings.key_file}:\n\n    {keys[0]}\n\n"
            "  Send it as the X-API-Key header. It is shown only this once.\n",
            flush=True,
        )
    reason = asyncio.run(check_redis(url))
    if reason:
        log.warning("%s (the API will answer 503 until it is reachable)", reason)
    app = create_app(settings, url, keys, run_worker=not args.no_worker)
    # proxy_headers off: uvicorn would otherwise believe X-Forwarded-For from 127.0.0.1 by
    # default; the app reads it only from TRUSTED_PROXIES.
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        log_config=None,
        access_log=False,
        lifespan="on",
        proxy_headers=False,
    )
    server = uvicorn.Server(config)

    async def main() -> None:
        supervisor = asyncio.ensure_future(bundled.supervise()) if bundled else None
        try:
            await server.serve()
        finally:
            if supervisor:
                supervisor.cancel()

    log.info(
        "waqtor listening on http://%s:%d (Redis at %s)", args.host, args.port, redis_label(url)
    )
    # Everything imported and built so far lives as long as the process. Without this, each
    # full collection walked all of it (phone metadata, pydantic and FastAPI internals): 50-70 ms
    # pauses that made a polling dashboard's p99 several times its median.
    gc.collect()
    gc.freeze()
    try:
        # uvicorn picks uvloop (and httptools) only when it creates the loop itself; since serve
        # runs its own main(), it must hand uvicorn's loop factory to the runner explicitly.
        # (shutdown.run: an exit never waits on a shutdown step that ran out of time.)
        shutdown.run(main(), config.get_loop_factory())
    finally:
        if bundled is not None:
            bundled.stop()
    return 0


# ---------------- worker ----------------
async def _run_worker(settings: Settings, url: str, burst: bool) -> int:
    from waqtor.runtime.services import build
    from waqtor.sending.worker import CampaignWorker

    reason = await check_redis(url)
    if reason:
        log.warning("%s; retrying until it answers", reason)
    from waqtor.campaigns import web_inbox

    worker = CampaignWorker(build(settings, url, patient=True))
    web_inbox.install(worker.s)  # this process may hold WhatsApp Web sessions
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await worker.start()
    try:
        if burst:
            await _until_drained(worker, stop)
        else:
            await stop.wait()
    finally:
        await worker.stop()
        await worker.close()
    return 0


async def _until_drained(worker: Any, stop: asyncio.Event) -> None:
    """--burst: exit once no job is waiting, active or delayed."""
    quiet = 0
    while not stop.is_set():
        counts = await worker.s.engine.counts()
        busy = counts["waiting"] + counts["active"] + counts["delayed"]
        quiet = quiet + 1 if busy == 0 else 0
        if quiet >= 3:
            return
        try:
            await asyncio.wait_for(stop.wait(), 0.5)
        except TimeoutError:
            pass


def worker(args: argparse.Namespace) -> int:
    from waqtor.runtime import logs

    settings = _settings()
    if args.concurrency:
        settings.worker_concurrency = args.concurrency
    logs.setup(
        settings.log_level,
        settings.data_dir / "logs" if settings.data_dir.exists() else None,
        settings.log_format,
    )
    url = _worker_url(settings)
    if args.check:
        return asyncio.run(_check(settings, url))
    # uvloop: the worker's time goes to Redis round trips, where uvloop's sockets are cheaper.
    return shutdown.run(_run_worker(settings, url, args.burst), uvloop.new_event_loop)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="waqtor",
        # Plain text: argparse prints the description as it is, so no reST markup here.
        description="Send one personalised WhatsApp text to many recipients, safely. "
        "'waqtor serve' runs the API, the dashboard, a worker and (with no REDIS_URL) its own "
        "Redis; 'waqtor worker' runs more workers on any machine that reaches the same Redis.",
        epilog="Settings come from environment variables (or .env): see docs/settings.md.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p_serve = sub.add_parser("serve", help="run the API, a worker and (without REDIS_URL) Redis")
    p_serve.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    p_serve.add_argument("--port", type=int, default=8080, help="port to listen on (8080)")
    p_serve.add_argument(
        "--no-worker", action="store_true", help="API and dashboard only, no worker"
    )
    p_serve.add_argument("--check", action="store_true", help="exit 0 if healthy, 1 with a reason")
    p_serve.set_defaults(func=serve)
    p_worker = sub.add_parser("worker", help="run a worker process against the same Redis")
    p_worker.add_argument("--burst", action="store_true", help="drain the queue, then exit")
    p_worker.add_argument("--check", action="store_true", help="exit 0 if healthy, 1 with a reason")
    p_worker.add_argument(
        "--concurrency", type=int, default=0, help="campaigns at once (WORKER_CONCURRENCY)"
    )
    p_worker.set_defaults(func=worker)
    from waqtor.cli import accounts as cli_accounts

    cli_accounts.register(sub, _worker_url, _settings)
    from waqtor.cli import web as cli_web

    cli_web.register(sub, _worker_url, _settings)
    from waqtor.cli import remote

    remote.register(sub)
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
