from __future__ import annotations

import pytest

from tests.smpp.support import RecordingSink


@pytest.fixture
def sink() -> RecordingSink:
    return RecordingSink()
