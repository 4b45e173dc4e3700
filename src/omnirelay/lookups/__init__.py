"""Number lookup providers: who answers POST /hlr/sync. Pluggable like the channels, chosen by
`[lookup] provider`: `offline` (the default: libphonenumber's metadata, no network), `sandbox`
(deterministic live answers for tests and demos) and `http` (an HLR service)."""

from __future__ import annotations

from omnirelay.config import LOOKUP_PROVIDERS, LookupSettings
from omnirelay.lookups.base import LookupProvider, LookupUnavailable

PROVIDERS = LOOKUP_PROVIDERS


def build(settings: LookupSettings) -> LookupProvider:
    """The configured provider; config.py has already refused unknown names and missing URLs.
    Each is imported only when chosen: httpx is slow to import, and every CLI command is a
    fresh process that builds the app."""
    if settings.provider == "http":
        from omnirelay.lookups.http import HttpLookup

        return HttpLookup(settings.url, token=settings.token, username=settings.username,
                          password=settings.password, timeout=settings.timeout)
    if settings.provider == "sandbox":
        from omnirelay.lookups.sandbox import SandboxLookup

        return SandboxLookup()
    from omnirelay.lookups.offline import OfflineLookup

    return OfflineLookup()


__all__ = ["PROVIDERS", "LookupProvider", "LookupUnavailable", "build"]
