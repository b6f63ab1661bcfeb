"""Verbs that talk to a running service over its HTTP API (``waqtor.client``): ``send``,
``jobs``, ``job``, ``pause``, ``resume``, ``cancel``, ``report``.

The target is ``--url``/``--key``, else ``WAQTOR_URL``/``WAQTOR_API_KEY``. Tables by default,
``--json`` for scripts. Progress goes to stderr, so ``--json`` output stays clean.

Exit codes (``waqtor send --wait``, ``waqtor job``): 0 every recipient was sent; 1 the campaign
failed; 2 it finished with failed, unknown or otherwise unsent recipients; 3 the service
answered an error or could not be reached; 64 a wrong command line; 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

from pydantic import BaseModel
from rich.console import Console, Group
from rich.live import Live
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Column, Table
from rich.text import Text

from waqtor.client import Client, WaqtorError, models

OK, FAILED, UNSENT, ERROR, USAGE, INTERRUPTED = 0, 1, 2, 3, 64, 130
#: Recipient statuses grouped into the bars ``send --wait`` shows.
GROUPS: dict[str, tuple[str, ...]] = {
    "sent": ("sent", "delivered", "read"),
    "failed": ("failed",),
    "unknown": ("unknown",),
    "not sent": ("canceled", "suppressed", "expired", "skipped"),
}

# Piped or redirected output has no width to fit: wide enough that no table is cut short.
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def _usage_error(parser: argparse.ArgumentParser) -> Callable[[str], NoReturn]:
    def error(message: str) -> NoReturn:
        parser.print_usage(sys.stderr)
        err.print(f"waqtor {parser.prog.split()[-1]}: error: {message}")
        sys.exit(USAGE)

    return error


def register(sub: Any) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", help="the service (default: $WAQTOR_URL or 127.0.0.1:8080)")
    common.add_argument("--key", help="API key (default: $WAQTOR_API_KEY); prefer the variable")
    common.add_argument("--json", action="store_true", help="JSON output for scripts")

    def add(name: str, help_text: str, run: Callable[[argparse.Namespace], int]) -> Any:
        p = sub.add_parser(name, help=help_text, parents=[common])
        p.error = _usage_error(p)
        p.set_defaults(func=lambda args: _guarded(run, args))
        return p

    send = add("send", "preview and send a CSV list to a running service", cmd_send)
    send.add_argument("file", type=Path, help="CSV with a header row: phone, name, ...")
    send.add_argument("--message", "-m", help='template, e.g. "Hi {name}"')
    send.add_argument("--account", help="sender account, or several: a,b")
    send.add_argument("--send-at", help="ISO 8601 with a zone: start then")
    send.add_argument("--dry-run", action="store_true", help="preview only; send nothing")
    send.add_argument("--wait", action="store_true", help="follow with a live progress bar")
    jobs = add("jobs", "list campaigns, newest first", cmd_jobs)
    jobs.add_argument("--state", help="only this state: waiting, active, delayed, failed ...")
    jobs.add_argument("--limit", type=int, default=50)
    add("job", "one campaign: counts and why it waits", cmd_job).add_argument("id")
    for verb in ("pause", "resume", "cancel"):
        add(verb, f"{verb} one campaign", cmd_control).add_argument("id")
    report = add("report", "download a campaign's report (CSV)", cmd_report)
    report.add_argument("id")
    report.add_argument("-o", "--output", type=Path, help="file (default: <id>.csv)")


def _guarded(run: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    try:
        return run(args)
    except KeyboardInterrupt:
        # Before a campaign was followed (while previewing or sending): rerunning the same
        # command is safe, its Idempotency-Key is derived from the file and the options.
        print(f"waqtor {args.command}: interrupted", file=sys.stderr)
        return INTERRUPTED
    except (WaqtorError, ValueError, OSError) as exc:
        if args.json:
            out.print_json(data={"success": False, "error": str(exc)})
        # Plain: rich would wrap it at 80 columns when stderr is not a terminal.
        print(f"waqtor {args.command}: {exc}", file=sys.stderr)
        return ERROR


def _client(args: argparse.Namespace) -> Client:
    if not (args.key or os.environ.get("WAQTOR_API_KEY")):
        raise ValueError("no API key: set WAQTOR_API_KEY (or pass --key)")
    return Client(args.url, args.key)


def _dump(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list):
        return [_dump(v) for v in value]
    return value


def _print_json(value: Any) -> None:
    # Plain print: rich would wrap long lines, and scripts read this.
    print(json.dumps(_dump(value), ensure_ascii=False))


def exit_code(job: models.Job) -> int:
    if job.status == "failed":
        return FAILED
    counts = job.recipients
    delivered = counts.sent + counts.delivered + counts.read
    return OK if delivered == counts.total and job.status == "completed" else UNSENT


# ------------------------------------------------------------------ send
def _accounts(raw: str | None) -> tuple[str | None, list[str] | None]:
    if not raw:
        return None, None
    names = [n.strip() for n in raw.split(",") if n.strip()]
    return (names[0], None) if len(names) == 1 else (None, names)


def _print_preview(p: models.Preview) -> None:
    out.print(
        f"[bold]{p.total}[/bold] recipients will be sent ({p.sendMode}); "
        f"{len(p.invalid)} invalid, {p.duplicates} duplicate, {p.suppressedCount} suppressed",
        markup=True,
    )
    for bad in p.invalid[:5]:
        out.print(f"  invalid #{bad.index}: {bad.phone!s}: {bad.error}")
    for warning in p.warnings:
        out.print(f"  [yellow]warning:[/yellow] {warning}", markup=True)
    for sample in p.samples[:3]:
        out.print(f"  {sample.phone}: {sample.text}")
    for account, eta in p.schedule.items():
        wait = f", waits for its cap: {eta.capWait}" if eta.capWait else ""
        out.print(f"  account {account}: {eta.recipients} in {eta.estimatedTime}{wait}")


def cmd_send(args: argparse.Namespace) -> int:
    account, accounts = _accounts(args.account)
    if not args.file.is_file():
        raise ValueError(f"{args.file}: no such file")
    with _client(args) as client:
        options: dict[str, Any] = {
            "account": account,
            "accounts": accounts,
            "send_at": args.send_at,
        }
        if args.dry_run or not args.json:
            # Only to be shown: with --json the send's own answer is the output, and the list
            # goes up once (a preview costs a whole upload and the server's parse of it).
            preview = client.preview(args.file, args.message, **options)
            if args.json:
                _print_json(preview)
            else:
                _print_preview(preview)
            if args.dry_run:
                return OK
        sent = client.send(args.file, args.message, **options)
        if not args.json:
            again = " (already sent by an earlier run: nothing sent again)" if sent.replayed else ""
            where = f"campaign {sent.jobId}" if sent.jobId else "sent at once"
            out.print(f"{where}: {sent.total} recipients, {sent.mode}{again}")
        if sent.jobId is None:
            if args.json:
                _print_json(sent)
            else:
                out.print(f"{sent.successful or 0} sent, {sent.failed or 0} failed")
                for r in sent.results or []:
                    if not r.success:
                        out.print(f"  failed #{r.index} {r.normalizedPhone or r.phone}: {r.error}")
            return OK if not sent.failed else UNSENT
        if not args.wait:
            if args.json:
                _print_json(sent)
            else:
                out.print(f"follow it with: waqtor job {sent.jobId}")
            return OK
        job = follow(client, sent.jobId, show=err.is_terminal or not args.json)
        if args.json:
            _print_json(job)
        else:
            _print_job(job)
        return exit_code(job)


class Bars:
    """One bar per status group, the rate and ETA of the sent bar, and why it waits."""

    def __init__(self, total: int) -> None:
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description:>9}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeRemainingColumn(),
            console=err,
        )
        self.tasks: dict[str, TaskID] = {
            name: self.progress.add_task(name, total=total, rate="") for name in GROUPS
        }
        self.status = Text("")
        self.started = time.monotonic()
        self.first_sent: int | None = None

    def renderable(self) -> Group:
        return Group(self.progress, self.status)

    def update(self, job: models.Job) -> None:
        counts = job.recipients.model_dump()
        total = job.recipients.total or None
        for name, statuses in GROUPS.items():
            done = sum(int(counts.get(s, 0)) for s in statuses)
            self.progress.update(self.tasks[name], completed=done, total=total)
        sent = sum(int(counts.get(s, 0)) for s in GROUPS["sent"])
        if self.first_sent is None:
            self.first_sent, self.started = sent, time.monotonic()
        elapsed = time.monotonic() - self.started
        if elapsed > 0.5 and sent > self.first_sent:
            rate = (sent - self.first_sent) / elapsed
            self.progress.update(self.tasks["sent"], rate=f"{rate:.1f}/s")
        line = f"campaign {job.id}: {job.status}"
        if job.waitingFor:
            line += f"; {job.waitingFor}"
        self.status = Text(line)


def follow(client: Client, job_id: str, show: bool = True) -> models.Job:
    """Wait for the campaign with live bars; Ctrl-C asks whether to pause it or detach."""
    bars = Bars(client.job(job_id).recipients.total)
    live = Live(bars.renderable(), console=err, refresh_per_second=4, transient=False)

    def on_progress(job: models.Job) -> None:
        bars.update(job)
        live.update(bars.renderable())

    try:
        if show:
            live.start()
        job = client.wait(job_id, on_progress=on_progress)
        on_progress(job)
        return job
    except KeyboardInterrupt:
        live.stop()
        return _interrupted(client, job_id)
    finally:
        live.stop()


def _interrupted(client: Client, job_id: str) -> NoReturn:
    answer = "d"
    if sys.stdin.isatty():
        try:
            answer = (
                input(f"\nPause campaign {job_id} [p], or detach and leave it running [d]? ")
                .strip()
                .lower()
            )
        except (EOFError, KeyboardInterrupt):
            answer = "d"
    if answer.startswith("p"):
        changed = client.pause(job_id)
        err.print(changed.message or f"campaign {job_id} paused")
        err.print(f"resume it with: waqtor resume {job_id}")
    else:
        err.print(f"detached; campaign {job_id} goes on. Follow it with: waqtor job {job_id}")
    sys.exit(INTERRUPTED)


# ------------------------------------------------------------ the others
def _when(ms: int | None) -> str:
    if not ms:
        return ""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


def cmd_jobs(args: argparse.Namespace) -> int:
    with _client(args) as client:
        rows = []
        # Filtering by state reads whole pages of 1,000: few requests even for many jobs.
        page = 1000 if args.state else min(max(args.limit, 1), 1000)
        for row in client.iter_jobs(page=page, state=args.state):
            rows.append(row)
            if len(rows) >= args.limit:
                break
    if args.json:
        _print_json(rows)
        return OK
    table = Table("status", "progress", "account", "total", Column("created (UTC)", no_wrap=True))
    table.columns.insert(0, Column("id", no_wrap=True))
    for row in rows:
        table.add_row(
            row.id,
            row.status,
            f"{row.progress}%" if isinstance(row.progress, int | float) else "",
            str(row.data.get("account", "")),
            str(row.data.get("total", "")),
            _when(row.timestamp),
        )
    out.print(table)
    return OK


def _print_job(job: models.Job) -> None:
    out.print(f"campaign [bold]{job.id}[/bold]: {job.status}", markup=True)
    if job.waitingFor:
        out.print(f"waiting: {job.waitingFor}")
    if job.failedReason:
        out.print(f"failed: {job.failedReason}")
    table = Table("status", "recipients")
    for status, n in job.recipients.model_dump().items():
        if n:
            table.add_row(status, str(n))
    table.add_row("total", str(job.recipients.total))
    out.print(table)


def cmd_job(args: argparse.Namespace) -> int:
    with _client(args) as client:
        job = client.job(args.id)
    if args.json:
        _print_json(job)
    else:
        _print_job(job)
    return exit_code(job) if job.finished else OK


def cmd_control(args: argparse.Namespace) -> int:
    with _client(args) as client:
        action = {"pause": client.pause, "resume": client.resume, "cancel": client.cancel}
        result = action[args.command](args.id)
    if args.json:
        _print_json(result)
    else:
        out.print(result.message or f"{args.command}: done")
    return OK


def cmd_report(args: argparse.Namespace) -> int:
    target: Path = args.output or Path(f"{args.id}.csv")
    with _client(args) as client:
        progress = Progress(
            TextColumn("report"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            console=err,
            transient=True,
            disable=not err.is_terminal,
        )
        with progress:
            task = progress.add_task("report", total=None)
            size = client.download_report(
                args.id, target, on_progress=lambda n: progress.update(task, completed=n)
            )
    rows = max(0, sum(1 for _ in target.open("rb")) - 1)
    if args.json:
        _print_json({"file": str(target), "bytes": size, "rows": rows})
    else:
        out.print(f"{target}: {rows} rows, {size} bytes")
    return OK
