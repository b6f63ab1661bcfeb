"""``python -m tests.web_main <waqtor args>``: waqtor's command line with our WhatsApp Web
adapter faked (``tests.fake_web``), for tests that run real processes. With
``FAKE_WEB_AUTOSCAN_S`` set, the "phone" scans the first QR code after that many seconds."""

from __future__ import annotations

import os
import sys
import threading

from tests.fake_web import FakeWebClient
from waqtor.cli.main import main
from waqtor.providers.web import hub


class AutoScan(FakeWebClient):
    def rotate_qr(self) -> None:
        super().rotate_qr()
        delay = float(os.environ.get("FAKE_WEB_AUTOSCAN_S") or 0)
        if delay and self.qr_shown == 1:
            threading.Timer(delay, self.scan).start()


hub.neonize_factory = lambda: AutoScan

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
