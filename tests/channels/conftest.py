from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.channels.support import FakeUpstream, RecordingSink


@pytest.fixture
async def upstream() -> AsyncIterator[FakeUpstream]:
    server = await FakeUpstream().start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
def sink() -> RecordingSink:
    return RecordingSink()
