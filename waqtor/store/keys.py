"""Every Redis key waqtor writes, in one place.

BullMQ's own keys belong to BullMQ and are named by the engine (``Engine.key``) alone; a
script that must read one (a job's lock) is given its name.
"""

from __future__ import annotations

from dataclasses import dataclass

#: In the bullmq job id of every helper job (``engine.add_assists``): a campaign's own job id
#: never contains it, so readers can tell the two apart.
HELPER_JOB_MARK = "~assist~"
#: ``backlog(a)`` ends with the first, ``account_messages(a)`` with the second, both keys
#: otherwise the same (the Lua scripts swap one for the other: lua/_account_messages.lua).
BACKLOG_SUFFIX = "backlog"
ACCOUNT_MESSAGES_SUFFIX = "msgs"


@dataclass(frozen=True)
class Keys:
    prefix: str = "wq"

    # --- campaign ledger ---
    def meta(self, cid: str) -> str:
        """Hash: account, template, total, cursor, paused, counts ``n:<code>``."""
        return f"{self.prefix}:c:{cid}"

    def recipients(self, cid: str) -> str:
        """List: one JSON ``[phone, vars, own_template?]`` per recipient, in request order."""
        return f"{self.prefix}:c:{cid}:r"

    def status(self, cid: str) -> str:
        """String: one status byte per recipient (``RecipientStatus.code``)."""
        return f"{self.prefix}:c:{cid}:s"

    def detail(self, cid: str) -> str:
        """Hash: index -> JSON attempts, attempt id, message id, error, timestamps (ms)."""
        return f"{self.prefix}:c:{cid}:d"

    def inflight(self, cid: str) -> str:
        """Hash: index -> attempt id of a send that has started and not been recorded."""
        return f"{self.prefix}:c:{cid}:f"

    def retry(self, cid: str, lane: int = 0) -> str:
        """Sorted set: a lane's indexes scored by when they may be retried (ms)."""
        return f"{self.prefix}:c:{cid}:q" + (str(lane) if lane else "")

    def unsettled(self, cid: str) -> str:
        """Sorted set: unknown recipients scored by when their send lease ends (ms)."""
        return f"{self.prefix}:c:{cid}:u"

    def failure(self, cid: str) -> str:
        """String (30-day TTL, at most ``failures.MAX_TRACE_CHARS``): the stack trace of the
        campaign job's last failure, for admins on the campaign page. bullmq's job data, which
        Node tools such as Bull Board show, keeps only a short reason."""
        return f"{self.prefix}:c:{cid}:trace"

    def instant_lease(self, cid: str) -> str:
        """String with a TTL (ms): an instant send's request is alive and sending; renewed by
        that request. Its safety-net job does not start while this exists."""
        return f"{self.prefix}:c:{cid}:lease"

    def campaign_keys(self, cid: str, lanes: int = 1) -> list[str]:
        """Every key of a campaign; the status string is third (delete.lua relies on it)."""
        return [
            self.meta(cid),
            self.recipients(cid),
            self.status(cid),
            self.detail(cid),
            self.inflight(cid),
            self.unsettled(cid),
            self.failure(cid),
            *(self.retry(cid, lane) for lane in range(lanes)),
        ]

    def claim_keys(
        self, cid: str, lane: int, account: str, job_lock: str, queue_meta: str
    ) -> list[str]:
        """KEYS of claim.lua and claim_batch.lua, in their order: the campaign's, then the
        lane's account's, then the attempt index, then the account's next slot. ``job_lock``:
        bullmq's lock key of the job the claimer must hold; ``queue_meta``: bullmq's queue meta
        hash (both from the engine)."""
        return [
            self.meta(cid),
            self.recipients(cid),
            self.status(cid),
            self.detail(cid),
            self.inflight(cid),
            self.retry(cid, lane),
            self.message_counts,
            job_lock,
            queue_meta,
            self.unsettled(cid),
            self.last_send_ms(account),
            self.suppressed(account),
            self.backlog(account),
            self.sent_window(account),
            self.cool_until_ms(account),
            self.attempt_index(cid),
            self.next_slot_ms(account),
        ]

    def finish_keys(self, cid: str, lane: int, account: str, day: int) -> list[str]:
        """KEYS of finish_batch.lua, in its order; ``day``: today, in days since the epoch
        (UTC), for the message index."""
        return [
            self.meta(cid),
            self.status(cid),
            self.detail(cid),
            self.inflight(cid),
            self.retry(cid, lane),
            self.message_counts,
            self.backlog(account),
            self.unsettled(cid),
            self.last_send_ms(account),
            self.sent_texts(account),
            self.sent_window(account),
            self.callback_items,
            self.callback_due,
            self.recipients(cid),
            self.message_index(day),
            self.attempt_index(cid),
        ]

    @property
    def campaigns(self) -> str:
        """Sorted set: campaign id scored by creation time (ms)."""
        return f"{self.prefix}:campaigns"

    @property
    def jobs(self) -> str:
        """Sorted set: queued campaign (job) id scored by creation time (ms), for listing."""
        return f"{self.prefix}:jobs"

    @property
    def paused_campaigns(self) -> str:
        """Set: campaigns paused one by one (their jobs wait in *delayed*), for stats."""
        return f"{self.prefix}:paused"

    @property
    def canceled_jobs(self) -> str:
        """Sorted set: canceled campaigns whose job has finished, scored by that time (ms).
        bullmq calls their jobs completed; stats, lists and the dashboard call them canceled."""
        return f"{self.prefix}:canceled"

    @property
    def foreign_jobs(self) -> str:
        """Sorted set: jobs added to our queue outside waqtor (e.g. from Bull Board) with no
        campaign stored, failed on purpose, scored by time (ms); counted apart from failures."""
        return f"{self.prefix}:foreign"

    @property
    def message_counts(self) -> str:
        """Hash: status code -> recipients in that status, over every stored campaign."""
        return f"{self.prefix}:stats:msgs"

    def idempotency(self, digest: str) -> str:
        """String (24 h): the stored response of a send-bulk with that Idempotency-Key."""
        return f"{self.prefix}:idem:{digest}"

    # --- security: failed attempts, dashboard sessions ---
    def auth_failures(self, client: str) -> str:
        """Integer (expires with its window): failed logins and wrong API keys from one client
        address (an IPv6 address counts by its /64)."""
        return f"{self.prefix}:authfail:{client}"

    def session(self, sid: str) -> str:
        """String (expires with the login): ``<key fingerprint>:<generation>`` of a live
        dashboard session. Logout deletes it, so a copied cookie stops working at once."""
        return f"{self.prefix}:sess:{sid}"

    def session_generation(self, fingerprint: str) -> str:
        """Integer: the generation of one API key's dashboard sessions; "log out everywhere"
        increments it, which ends every session started before."""
        return f"{self.prefix}:sessgen:{fingerprint}"

    # --- accounts and pacing ---
    @property
    def accounts(self) -> str:
        """Hash: account name -> JSON settings (``domain.accounts.Account``)."""
        return f"{self.prefix}:accounts"

    def account_messages(self, account: str) -> str:
        """Hash: recipients by status on the account (their lane's sender), over every stored
        campaign. Fields: a status code -> a net change of that status (batches, creation,
        deletion), or two codes ``<from><to>`` -> how many recipients moved between them
        (single changes: one HINCRBY each). A status's count is its own field plus what moved
        in minus what moved out (``store.scrape.account_statuses``). Scripts derive the key from
        the account's backlog key (``ACCOUNT_MESSAGES_SUFFIX`` for ``BACKLOG_SUFFIX``), which
        they already hold, so no script's KEYS change."""
        return f"{self.prefix}:acct:{account}:{ACCOUNT_MESSAGES_SUFFIX}"

    def sent_window(self, account: str) -> str:
        """Sorted set: the account's sends of the last 24 h (attempt id scored by ms), for
        the sliding hourly and daily caps. Kept only for accounts that have caps."""
        return f"{self.prefix}:acct:{account}:sent"

    def cool_until_ms(self, account: str) -> str:
        """String: the account rests until this time (ms) after a ban signal."""
        return f"{self.prefix}:acct:{account}:cool_ms"

    def cool_until_ms_parts(self) -> tuple[str, str]:
        """``(head, tail)`` with ``cool_until_ms(name) == head + name + tail``: for a script that
        reads the cool-down of accounts it only learns the names of inside Redis."""
        head, _, tail = self.cool_until_ms("\0").partition("\0")
        return head, tail

    def strikes(self, account: str) -> str:
        """Integer (1 h TTL): ban signals seen recently; three pause the account."""
        return f"{self.prefix}:acct:{account}:strikes"

    def next_slot_ms(self, account: str) -> str:
        """String: the earliest time (ms) the account's next send may start."""
        return f"{self.prefix}:acct:{account}:next_ms"

    def last_send_ms(self, account: str) -> str:
        """String: when (ms) the account's last send was claimed."""
        return f"{self.prefix}:acct:{account}:last_ms"

    def sent_texts(self, account: str) -> str:
        """Sorted set: hash of (phone, text) sent by the account, scored by ms (7 days kept),
        for the optional cross-campaign duplicate guard."""
        return f"{self.prefix}:acct:{account}:texts"

    def suppressed(self, account: str) -> str:
        """Set: E.164 numbers that opted out of the account's messages; never sent."""
        return f"{self.prefix}:acct:{account}:suppressed"

    def backlog(self, account: str) -> str:
        """Integer: recipients still to send on the account, over all campaigns."""
        return f"{self.prefix}:acct:{account}:{BACKLOG_SUFFIX}"

    def send_ms(self, account: str) -> str:
        """String: moving average of the provider's send time for the account (ms)."""
        return f"{self.prefix}:acct:{account}:send_ms"

    def run_pace(self, account: str) -> str:
        """List (newest first, a few entries, TTL in ms): ``"<per_message_ms> <fixed_ms>"`` of
        the account's last campaign runs: ms per message really achieved (all their sends side
        by side, batches included) and the ms each run cost besides its sends (picked up,
        started, finished). For honest ETAs (``JobIndex.record_run``)."""
        return f"{self.prefix}:acct:{account}:run_pace"

    # --- WhatsApp Web sessions (``waqtor.store.web_sessions``) ---
    def web_lease(self, account: str) -> str:
        """String with a TTL (ms): the process holding the account's one live WhatsApp Web
        connection (``host:pid:tag``); renewed by that holder."""
        return f"{self.prefix}:web:{account}:lease"

    def web_state(self, account: str) -> str:
        """Hash: the session's state (``pairing``, ``connected``, ``logged_out``, ``banned``...),
        detail, current QR code or pairing code, ban end (ms), holder, updated (ms)."""
        return f"{self.prefix}:web:{account}:state"

    def web_requests(self, account: str) -> str:
        """List: JSON send requests for the holder from processes that do not hold the
        account (taken atomically by the holder; withdrawn by a requester that gives up)."""
        return f"{self.prefix}:web:{account}:req"

    def web_reply(self, request_id: str) -> str:
        """List (short TTL): the holder's one JSON answer to a relayed request."""
        return f"{self.prefix}:web:reply:{request_id}"

    def web_numbers(self, account: str) -> str:
        """Hash: E.164 number -> ``1|0:<checked ms>``, whether it is on WhatsApp (cached)."""
        return f"{self.prefix}:web:{account}:numbers"

    def web_pair_request(self, account: str) -> str:
        """String (TTL): an operator asked the holder to (re)pair: ``qr`` or ``code:<phone>``."""
        return f"{self.prefix}:web:{account}:pair"

    # --- WhatsApp Web gateway accounts (``store.gateways``) ---
    def gw_session(self, account: str) -> str:
        """Hash: the account's gateway session as last seen (state, working, detail, at_ms),
        written by the send path and by session webhooks; read by the API and dashboard."""
        return f"{self.prefix}:acct:{account}:gw_session"

    def gw_contacted(self, account: str) -> str:
        """Set: E.164 numbers the account has messaged (its contacts, for the new-contact cap)."""
        return f"{self.prefix}:acct:{account}:contacted"

    def gw_new_contacts(self, account: str) -> str:
        """Sorted set: new contacts of the last 24 h (number scored by ms)."""
        return f"{self.prefix}:acct:{account}:new_contacts"

    def gw_last_send(self, account: str, phone: str) -> str:
        """String (72 h TTL): ``<campaign id>:<attempt id>`` of the account's latest message to
        ``phone``, written before the request: an ack settles an unknown send by it, and a
        reply is counted for that campaign."""
        return f"{self.prefix}:acct:{account}:last_to:{phone}"

    def number_check(self, phone: str) -> str:
        """String with a TTL: ``1`` or ``0``, a gateway's answer whether ``phone`` is on
        WhatsApp (GATEWAY_NUMBER_CHECK_TTL_S)."""
        return f"{self.prefix}:onwa:{phone}"

    def gw_repliers(self, account: str) -> str:
        """Set: numbers that replied to the account (its reply rate: these over its contacts)."""
        return f"{self.prefix}:acct:{account}:repliers"

    def breaker_log(self, account: str) -> str:
        """List (newest first, at most ``accounts.BREAKER_LOG``): the account's breaker events,
        JSON ``{"at", "event", "detail"}``: ban signals, pauses, resumes."""
        return f"{self.prefix}:acct:{account}:breaker_log"

    def replies(self, cid: str) -> str:
        """Set: numbers that replied to the campaign (a reply within 72 h of its message)."""
        return f"{self.prefix}:c:{cid}:replies"

    # --- reconciler (``waqtor.sending.reconcile``) ---
    @property
    def reconcile_missing(self) -> str:
        """Hash: campaign id -> when (ms) its bullmq job was first seen missing."""
        return f"{self.prefix}:rec:missing"

    @property
    def reconcile_lock(self) -> str:
        """String with a TTL: the process running the current reconciler pass."""
        return f"{self.prefix}:rec:lock"

    @property
    def reconcile_stats(self) -> str:
        """Hash: passes, last pass (ms), orphans fixed, recipients closed, backlog fixes."""
        return f"{self.prefix}:rec:stats"

    @property
    def reconcile_log(self) -> str:
        """List: the latest fixes (JSON), newest first, capped."""
        return f"{self.prefix}:rec:log"

    # --- workers ---
    @property
    def workers(self) -> str:
        """Hash: worker id -> JSON heartbeat (host, pid, campaigns, last seen ms)."""
        return f"{self.prefix}:workers"

    # --- simulator ---
    @property
    def sim_outbox(self) -> str:
        """List: one JSON entry per simulated send."""
        return f"{self.prefix}:sim:outbox"

    @property
    def sim_attempts(self) -> str:
        """Hash: attempt id -> simulated message id."""
        return f"{self.prefix}:sim:attempts"

    @property
    def sim_faults(self) -> str:
        """Hash: fault switches shared by every process."""
        return f"{self.prefix}:sim:faults"

    # --- WhatsApp Cloud API: delivery status and status callbacks ---
    def attempt_index(self, cid: str) -> str:
        """Hash: attempt id -> recipient index, for sends whose outcome is not recorded yet
        (in flight or unknown); a status webhook finds them by attempt id. 30-day TTL."""
        return f"{self.prefix}:c:{cid}:att"

    def message_index(self, day: int) -> str:
        """Hash: provider message id -> ``<campaign id>:<index>``, one per day (days since
        the epoch, UTC) of sending; each expires 31 days after its last write."""
        return f"{self.prefix}:wamid:{day}"

    def throughput_next_ms(self, owner: str) -> str:
        """String: the earliest time (ms, fractional) the next provider request of ``owner``
        (a phone number, e.g. ``cloud_api:<phone-number id>``, or an account) may start under
        the provider's messages-per-second limit."""
        return f"{self.prefix}:mps:{owner}:next"

    @property
    def webhook_stats(self) -> str:
        """Hash: counters of status webhooks (received, applied, duplicate, unmatched ...)."""
        return f"{self.prefix}:wh:stats"

    @property
    def callback_items(self) -> str:
        """Hash: callback delivery id -> JSON (url, body, attempts, last outcome)."""
        return f"{self.prefix}:cb:items"

    @property
    def callback_due(self) -> str:
        """Sorted set: callback delivery ids scored by their next attempt (ms)."""
        return f"{self.prefix}:cb:due"

    @property
    def callback_failed(self) -> str:
        """Sorted set: callback deliveries given up (4xx, or 24 h of failures), by time."""
        return f"{self.prefix}:cb:failed"

    @property
    def callback_delivered(self) -> str:
        """List: the latest delivered callbacks (JSON summaries), newest first, capped."""
        return f"{self.prefix}:cb:delivered"

    def meta_parts(self) -> tuple[str, str]:
        """``(head, "")`` with ``meta(cid) == head + cid``; the ledger's other keys of a
        campaign are ``meta(cid)`` plus a suffix (``:s`` status, ``:lease``)."""
        head, _, tail = self.meta("\0").partition("\0")
        return head, tail
