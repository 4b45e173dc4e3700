"""The default provider: what libphonenumber's offline metadata says, no network asked."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from omnirelay.core.number_lookup import LookupNumber, offline_result


class OfflineLookup:
    name = "offline"

    async def lookup(self, numbers: Sequence[LookupNumber]) -> list[dict[str, Any]]:
        # The carrier and geocoder data are imported on the first lookup (about a second):
        # in a thread, so the event loop keeps serving the other requests meanwhile.
        return await asyncio.to_thread(lambda: [offline_result(n) for n in numbers])

    async def close(self) -> None:
        """Nothing to let go of."""
