"""Twilio's Messages API, the pure parts: errors, the Message resource, create parameters, list
paging, status callbacks and their signature.

Nothing here does I/O or imports a framework; `omnirelay.api.twilio` wires it to HTTP and the store.
The wire details follow shared/reference/twilio-api.md (what the official SDKs send and parse).
"""
