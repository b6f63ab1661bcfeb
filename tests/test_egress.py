"""Callbacks may not reach into the service's own network unless the operator allows it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import make_settings
from tests.fake_cloud_api import Receiver
from waqtor.runtime.services import build
from waqtor.sending import callbacks, egress

SECRET = "callback-secret-0123456789abcdef"


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "http://localhost/hook",
        "http://10.1.2.3/hook",
        "http://192.168.0.10/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:9000/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://0.0.0.0/hook",
    ],
)
async def test_non_public_addresses_are_refused(url: str) -> None:
    with pytest.raises(egress.Refused, match="not a public address"):
        await egress.resolve(url, allow_private=False)


async def test_a_public_address_is_pinned_with_the_original_host() -> None:
    dest = await egress.resolve("https://93.184.216.34:8443/cb?x=1", allow_private=False)
    assert dest.url == "https://93.184.216.34:8443/cb?x=1"
    assert dest.headers == {"Host": "93.184.216.34:8443"}
    assert dest.extensions == {"sni_hostname": "93.184.216.34"}
    local = await egress.resolve("http://localhost:9/hook", allow_private=True)
    assert local.url in ("http://127.0.0.1:9/hook", "http://[::1]:9/hook")
    assert local.headers == {"Host": "localhost:9"} and local.extensions == {}


async def test_a_refused_callback_is_given_up_and_never_sent(
    redis_url: str, tmp_path: Path, receiver_server: Receiver
) -> None:
    settings = make_settings(
        redis_url, tmp_path, callback_secret=SECRET, callback_allow_private=False
    )
    s = build(settings, redis_url)
    receiver_server.got.clear()
    d = callbacks.Dispatcher(s)
    try:
        cb_id = await callbacks.enqueue(s, receiver_server.url(), {"event": "message.status"})
        assert await d.run_once() == 1
        raw = await s.store.redis.hget(s.keys.callback_items, cb_id)
        failed = await s.store.redis.zscore(s.keys.callback_failed, cb_id)
    finally:
        await d.stop()
        await s.close()
    assert receiver_server.got == []
    assert failed is not None
    error = json.loads(raw or "{}")["last"]["error"]
    assert error.startswith("refused: 127.0.0.1 resolves to 127.0.0.1")


@pytest.fixture(scope="module")
def receiver_server() -> Iterator[Receiver]:
    server = Receiver().start()
    yield server
    server.stop()
