"""Deterministic live answers for tests and demos, chosen by the number's last four digits like
the sandbox channel's outcomes (README, "The sandbox"). The offline fields are real; the live
ones are made up, and the sandbox's own networks use the test network code MCC 001."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from omnirelay.core.number_lookup import (
    STATUS_OFF,
    STATUS_ON,
    LookupNumber,
    network,
    offline_result,
)

PHONE_OFF, ROAMING, PORTED, NO_ANSWER = "9970", "9971", "9972", "9973"


def sandbox_result(item: LookupNumber) -> dict[str, Any]:
    result = offline_result(item)
    if not item.valid or item.number.endswith(NO_ANSWER):
        if item.valid:
            result["error"] = "the sandbox network did not answer"
        return result
    home = result["originalNetwork"]
    result.update(status=STATUS_ON, roaming=False, ported=False, currentNetwork=home)
    if item.number.endswith(PHONE_OFF):
        result["status"] = STATUS_OFF
    elif item.number.endswith(ROAMING) and item.region:
        abroad = "SE" if item.region == "FI" else "FI"
        result.update(roaming=True, roamingNetwork=network(abroad, "Sandbox Roaming", "00103"))
    elif item.number.endswith(PORTED) and item.region:
        moved = network(item.region, "Sandbox Ported", "00102")
        result.update(ported=True, portedNetwork=moved, currentNetwork=moved)
    return result


class SandboxLookup:
    name = "sandbox"

    async def lookup(self, numbers: Sequence[LookupNumber]) -> list[dict[str, Any]]:
        return await asyncio.to_thread(lambda: [sandbox_result(n) for n in numbers])

    async def close(self) -> None:
        """Nothing to let go of."""
