"""The dashboard's Accounts pages over HTTP (in process, real Redis): list and create with any
provider, edit caps and pace, pause and resume (also after the breaker), the suppression list
(add, remove, CSV import), session state, new contacts, breaker history and reply rate; a
read-only key sees it all and changes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import App, make_settings
from tests.dashboard_support import READ_KEY, Browser, text_of
from waqtor.sending.breaker import Breaker

ACCOUNTS = "/admin/queues/accounts"


async def test_accounts_list_create_edit_pause_resume_and_suppress(
    redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GATEWAY_MAIN_URL", "http://127.0.0.1:9")
    settings = make_settings(redis_url, tmp_path, readonly_api_key=READ_KEY)
    async with App(settings) as app, Browser(app) as b:
        s = app.app.state.services
        assert (await b.login()).status_code == 303
        page = await b.get(ACCOUNTS)
        assert page.status_code == 200 and "default" in page.text and "New account" in page.text
        # Create a WAHA account: the gateway must be configured in the environment.
        bad = await b.post(ACCOUNTS, {"name": "x", "provider": "waha", "gateway": "nowhere"})
        assert bad.status_code == 303
        flash = text_of((await b.get(ACCOUNTS)).text)
        assert "GATEWAY_NOWHERE_URL" in flash and await s.accounts.get("x") is None
        made = await b.post(
            ACCOUNTS, {"name": "web", "provider": "waha", "gateway": "main", "tier": "new"}
        )
        assert made.status_code == 303 and made.headers["location"] == f"{ACCOUNTS}/web"
        account = await s.accounts.get("web", fresh=True)
        assert account is not None and account.session == "default" and account.tier == "new"
        detail = text_of((await b.get(f"{ACCOUNTS}/web")).text)
        assert "waha" in detail and "New contacts in 24 h: 0 of 10" in detail
        # Edit tier, caps, delay and jitter.
        await b.post(
            f"{ACCOUNTS}/web/edit",
            {
                "tier": "regular",
                "hourlyCap": "7",
                "dailyCap": "",
                "delayMs": "9000",
                "jitter": "0.5",
                "newContactsDailyCap": "3",
            },
        )
        account = await s.accounts.get("web", fresh=True)
        assert account is not None
        assert (account.tier, account.hourlyCap, account.dailyCap) == ("regular", 7, None)
        assert (account.delayMs, account.jitter, account.newContactsDailyCap) == (9000, 0.5, 3)
        wrong = await b.post(f"{ACCOUNTS}/web/edit", {"hourlyCap": "lots"})
        assert wrong.status_code == 303
        assert "hourlyCap" in text_of((await b.get(f"{ACCOUNTS}/web")).text)
        # Pause and resume; the breaker's pause shows in the history and its resume is reduced.
        await b.post(f"{ACCOUNTS}/web/pause")
        assert (await s.accounts.get("web", fresh=True)).paused
        await b.post(f"{ACCOUNTS}/web/resume")
        assert not (await s.accounts.get("web", fresh=True)).paused
        await Breaker(s).pause("web", "breaker: 3 ban signals (463) within an hour")
        await b.post(f"{ACCOUNTS}/web/resume")
        resumed = await s.accounts.get("web", fresh=True)
        assert resumed is not None and not resumed.paused and resumed.reducedUntilMs
        history = text_of((await b.get(f"{ACCOUNTS}/web")).text)
        assert (
            "paused breaker: 3 ban signals (463)" in history and "resumed at half caps" in history
        )
        # Suppression list: add, import a CSV, remove.
        await b.post(f"{ACCOUNTS}/web/suppressions", {"phones": "+966501234567\nnot a phone"})
        csv = b"phone,name\n966501111111,A\n+966502222222,B\n"
        resp = await b.client.post(
            f"{ACCOUNTS}/web/suppressions",
            data={"csrf": b.csrf, "phones": ""},
            files={"file": ("list.csv", csv, "text/csv")},
        )
        assert resp.status_code == 303
        shown = text_of((await b.get(f"{ACCOUNTS}/web")).text)
        assert "+966501111111" in shown and "+966502222222" in shown and "+966501234567" in shown
        await b.post(f"{ACCOUNTS}/web/suppressions/remove", {"phone": "+966501234567"})
        phones, _, total = await s.suppressions.page("web", 0, 100)
        phones = sorted(phones)
        assert phones == ["+966501111111", "+966502222222"] and total == 2
        # Session state, new contacts and reply rate as the send path and webhooks record them.
        now = s.clock.now_ms()
        await s.gateways.record_session("web", "SCAN_QR_CODE", False, "scan the QR code", now)
        await s.gateways.contact_gate("web", "+966503333333", now, 3)
        await s.gateways.contact_gate("web", "+966504444444", now, 3)
        await s.gateways.count_reply("web", "c1", "+966503333333")
        listing = text_of((await b.get(ACCOUNTS)).text)
        assert "SCAN_QR_CODE" in listing and "50 % (1 of 2)" in listing

    # A read-only key sees the same and changes nothing.
    async with App(settings) as app, Browser(app) as ro:
        s = app.app.state.services
        assert (await ro.login(READ_KEY)).status_code == 303
        html = (await ro.get(f"{ACCOUNTS}/web")).text
        assert (
            "Read-only key" in html
            and "+966501111111" in html
            and 'action="' + ACCOUNTS not in html
        )
        for path, data in (
            (f"{ACCOUNTS}/web/pause", {}),
            (f"{ACCOUNTS}/web/edit", {"hourlyCap": "1"}),
            (f"{ACCOUNTS}/web/suppressions", {"phones": "+966505555555"}),
            (f"{ACCOUNTS}/web/suppressions/remove", {"phone": "+966501111111"}),
            (ACCOUNTS, {"name": "ro"}),
        ):
            resp = await ro.post(path, data)
            assert resp.status_code == 403, path
        account = await s.accounts.get("web", fresh=True)
        assert account is not None and not account.paused and account.hourlyCap == 7
        assert (await s.suppressions.page("web", 0, 100))[2] == 2
