"""The engine tests' gateway: API and workers in one live server, with webhook retries fast
enough for a test to watch them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support import LiveServer, WebhookReceiver, make_settings, start_live_server

FAST_RETRIES = {"backoff_base": 0.2, "backoff_factor": 1.5, "jitter": 0.1}


@pytest.fixture
def gateway(database_url: str, receiver: WebhookReceiver) -> Iterator[LiveServer]:
    live = start_live_server(make_settings(database_url, webhooks=FAST_RETRIES))
    yield live
    live.stop()
