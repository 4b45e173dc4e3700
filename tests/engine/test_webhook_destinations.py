"""The webhook destination policy, checked on resolved addresses at send time, and 3xx answers as
failed tries. Real receivers on 127.0.0.1; SQLite and PostgreSQL."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from tests.engine.outbox import Receiver, eventually, outbox

PRIVATE_NAME = "hooks.internal.test"  # resolves to 10.20.30.40 (monkeypatched getaddrinfo)
LOOPBACK_NAME = "receiver.internal.test"  # resolves to 127.0.0.1


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


@pytest.fixture
def names(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """getaddrinfo answers for the test's names; counts each lookup of them."""
    real = socket.getaddrinfo
    answers = {PRIVATE_NAME: "10.20.30.40", LOOPBACK_NAME: "127.0.0.1"}
    lookups: dict[str, int] = {}

    def fake(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host in answers:
            lookups[host] = lookups.get(host, 0) + 1
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (answers[host], int(port)))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    return lookups


def refused(row: dict[str, Any], *words: str) -> None:
    assert row["state"] == "dead", row
    assert row["tries"] == 1, row  # refused once, not retried
    assert row["last_error"].startswith("destination refused: "), row
    for word in words:
        assert word in row["last_error"], row


async def test_production_refuses_loopback_private_and_link_local_targets(
        database_url: str, receiver: Receiver, names: dict[str, int],
        caplog: pytest.LogCaptureFixture) -> None:
    port = receiver.port
    targets = [
        (f"http://127.0.0.1:{port}/dlr", "loopback"),
        (f"http://localhost:{port}/dlr", "localhost resolves to"),
        (f"http://[::1]:{port}/dlr", "loopback"),
        (f"http://{LOOPBACK_NAME}:{port}/dlr", f"{LOOPBACK_NAME} resolves to 127.0.0.1"),
        (f"http://{PRIVATE_NAME}:{port}/dlr", "10.20.30.40, a private address"),
        ("http://169.254.169.254/latest/meta-data", "link-local"),
        ("http://[fe80::1]/dlr", "link-local"),
        ("http://[fd00::1]/dlr", "unique-local"),
        ("http://0.0.0.0/dlr", "unspecified"),
        ("http://224.0.0.1/dlr", "multicast"),
        ("http://[::ffff:127.0.0.1]/dlr", "loopback"),
        (f"http://2130706433:{port}/dlr", "not an address the policy can check"),
    ]
    caplog.set_level(logging.ERROR, "omnirelay.engine.webhooks")
    async with outbox(database_url, production=True) as box:
        await box.queue(*(url for url, _ in targets))
        rows = await box.settled()
    assert receiver.count() == 0  # nothing reached the receiver on loopback
    for row, (url, words) in zip(rows, targets, strict=True):
        assert row["url"] == url
        refused(row, words)
    assert sum("destination refused" in r.getMessage() for r in caplog.records) == len(targets)
    assert names[PRIVATE_NAME] >= 1  # the name was resolved and its address checked


async def test_production_allow_list_opens_named_hosts_and_networks(
        database_url: str, receiver: Receiver, names: dict[str, int]) -> None:
    port = receiver.port
    async with outbox(database_url, production=True,
                      allowed_destinations=[LOOPBACK_NAME, "127.0.0.0/8"]) as box:
        await box.queue(f"http://{LOOPBACK_NAME}:{port}/by-name",
                        f"http://127.0.0.1:{port}/by-network",
                        f"http://[::1]:{port}/not-allowed",
                        f"http://{PRIVATE_NAME}:{port}/not-allowed")
        rows = await box.settled()
    assert [r["state"] for r in rows] == ["done", "done", "dead", "dead"]
    refused(rows[2], "::1, a loopback address")
    refused(rows[3], "private")
    assert sorted(receiver.paths) == ["/by-name", "/by-network"]


async def test_development_allows_loopback_only(
        database_url: str, receiver: Receiver, names: dict[str, int]) -> None:
    port = receiver.port
    async with outbox(database_url) as box:
        await box.queue(f"http://127.0.0.1:{port}/literal", f"http://localhost:{port}/localhost",
                        f"http://{LOOPBACK_NAME}:{port}/name",
                        f"http://{PRIVATE_NAME}:{port}/private",
                        "http://169.254.169.254/latest/meta-data")
        rows = await box.settled()
    assert [r["state"] for r in rows] == ["done", "done", "done", "dead", "dead"]
    refused(rows[3], "private")
    refused(rows[4], "link-local")
    assert sorted(receiver.paths) == ["/literal", "/localhost", "/name"]


class RebindingResolver(AbstractResolver):
    """Answers loopback the first time and a private address after: a client that looked the
    name up again to connect would go to 10.0.0.1."""

    def __init__(self) -> None:
        self.calls = 0

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        self.calls += 1
        address = "127.0.0.1" if self.calls == 1 else "10.0.0.1"
        return [{"hostname": host, "host": address, "port": port, "family": socket.AF_INET,
                 "proto": 0, "flags": socket.AI_NUMERICHOST}]

    async def close(self) -> None:
        pass


async def test_the_connection_goes_to_the_checked_address(
        database_url: str, receiver: Receiver) -> None:
    resolver = RebindingResolver()
    async with outbox(database_url, resolver=resolver) as box:
        await box.queue(f"http://rebind.test:{receiver.port}/dlr")
        rows = await box.settled()
    assert rows[0]["state"] == "done"
    assert receiver.paths == ["/dlr"]
    assert resolver.calls == 1  # checked once, connected to what was checked


async def test_a_redirect_is_a_failed_try_with_the_location_then_retried(
        database_url: str) -> None:
    receiver = Receiver(statuses=[301, 302, 200],
                        location="https://user:secret@hooks.example.com/final").start()
    try:
        async with outbox(database_url) as box:
            await box.queue(receiver.url + "/dlr")
            first = await eventually(box.rows, lambda rows: rows[0]["tries"] >= 1)
            assert first[0]["state"] == "pending"
            assert first[0]["last_error"].startswith(
                "HTTP 301 redirect to https://hooks.example.com/final")
            assert "secret" not in first[0]["last_error"]
            rows = await box.settled()
        assert rows[0]["state"] == "done"
        assert rows[0]["tries"] == 3  # 301, 302, then 200
        assert receiver.paths == ["/dlr"] * 3  # never followed to the Location
        assert box.sender.delivered == 1
    finally:
        receiver.stop()
