"""Number verification end to end over SMPP: the SDK starts a verification, the PIN travels in a
submit_sm to the SMSC simulator over TCP inside the template text, and the PIN read there verifies;
on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Iterator

import pytest
from messente_api import ApiClient, Configuration, NumberVerificationApi

from omnirelay.smsc.simulator import SmscSimulator
from tests.smpp.gateway_support import smpp_connector, smpp_gateway
from tests.support import LiveServer, create_account, wait_until

TO = "+37255512345"


@pytest.fixture
def simulator() -> Iterator[SmscSimulator]:
    """The simulator on its own event loop in a thread, so the test reads its submissions."""
    smsc = SmscSimulator(port=0, users={"omni": "secret-pw"}, receipt_delay=0.05)
    loop = asyncio.new_event_loop()
    started = threading.Event()
    stop = asyncio.Event()

    async def serve() -> None:
        await smsc.start()
        started.set()
        await stop.wait()
        await smsc.stop()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    assert started.wait(10), "the SMSC simulator did not start"
    yield smsc
    loop.call_soon_threadsafe(stop.set)
    thread.join(10)
    loop.close()


@pytest.fixture
def gateway(database_url: str, simulator: SmscSimulator) -> Iterator[LiveServer]:
    live = smpp_gateway(database_url, smpp_connector("sim", simulator.port))
    yield live
    live.stop()


def test_the_pin_reaches_the_smsc_inside_the_template(gateway: LiveServer,
                                                      simulator: SmscSimulator) -> None:
    account = gateway.call(create_account(gateway.runtime))
    verifier = NumberVerificationApi(ApiClient(Configuration(
        host=gateway.base_url, ignore_operation_servers=True)))
    answer = verifier.verify_number(account.api_username, account.api_password, TO,
                                    template="Acme login code <PIN>, valid 5 minutes",
                                    pin_length="8", var_from="Acme", max_tries="1")
    assert re.fullmatch(r"OK [0-9a-f-]{36}", answer), answer
    submission = wait_until(lambda: simulator.submissions and simulator.submissions[0])
    found = re.fullmatch(r"Acme login code (\d{8}), valid 5 minutes", submission.text)
    assert found is not None, submission.text
    assert (submission.destination_addr, submission.source_addr) == (TO[1:], "Acme")
    verification = answer[3:]
    assert verifier.verify_pin(account.api_username, account.api_password, verification,
                               "0" * 8 if found.group(1) != "0" * 8 else "1" * 8) == "INVALID"
    assert verifier.verify_pin(account.api_username, account.api_password, verification,
                               found.group(1)) == "VERIFIED"
