"""What a number lookup provider is: numbers in, one result per number out, in order."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from omnirelay.core.number_lookup import LookupNumber


class LookupUnavailable(Exception):
    """The provider could not answer (an HLR service down, slow, or answering nonsense). The
    request is answered with the spec's server error and its charge is given back."""

    def __init__(self, detail: str, status: int = 502) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status


class LookupProvider(Protocol):
    name: str

    async def lookup(self, numbers: Sequence[LookupNumber]) -> list[dict[str, Any]]:
        """Messente's SyncNumberLookupResult for each number, in the same order; raises
        LookupUnavailable when it cannot answer them."""
        ...

    async def close(self) -> None:
        """Let go of what the provider holds open (connections), at shutdown."""
        ...
