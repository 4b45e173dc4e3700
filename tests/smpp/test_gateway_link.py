"""The SMPP link as an SMSC sees it, through the whole gateway (Messente API -> engine -> SMPP over TCP
-> `omnirelay smsc`): a stop unbinds every session, and an SMSC's throughput cap is learned rather
than flooded with submits it refuses."""

from __future__ import annotations

import httpx

from tests.smpp.gateway_support import (
    cli_smsc,
    send,
    smpp_connector,
    smpp_gateway,
    status,
    wait_final,
)
from tests.support import create_account, free_port, wait_until

TO = "+37255512345"


def test_stopping_the_gateway_unbinds_every_session(database_url: str) -> None:
    """SMSCs that count binds per system_id refuse a quick restart after a bare TCP close
    (ESME_RALYBND); the gateway's stop unbinds each session and waits for unbind_resp."""
    with cli_smsc() as smsc, httpx.Client() as client:
        for round_ in range(2):  # and once more: the restart binds again at once
            live = smpp_gateway(database_url,
                                smpp_connector("pair", smsc.port, bind="transmitter+receiver"),
                                smpp_connector("trx", smsc.port))
            try:
                wait_until(lambda: smsc.stats()["sessions"] == 3)
                account = live.call(create_account(live.runtime, name=f"acme{round_}"))
                sent = send(client, live, account, "before the stop", TO)
                assert wait_final(client, live, account, sent)["status"] == "DELIVRD"
            finally:
                live.stop()
            wait_until(lambda: smsc.stats()["sessions"] == 0)
            stats = smsc.stats()
            assert (stats["unbinds"], stats["closed_without_unbind"]) == (3 * (round_ + 1), 0)
            assert stats["binds"] == 3 * (round_ + 1)


def test_an_smsc_cap_is_learned_not_flooded(database_url: str) -> None:
    """Against an SMSC capped at 50 submits/s and no rate_limit configured, the connector finds the
    cap from ESME_RTHROTTLED and holds under it. Before, each pause ended with the whole window (and
    every part queued behind it) firing into the cap again: 2.5 refused submits per message."""
    messages, port = 300, free_port()
    # The messages wait while the SMSC is not up yet, so that they meet it as one backlog (sent one
    # by one as they are accepted, they would come slower than the cap).
    live = smpp_gateway(database_url, smpp_connector("capped", port, retry_within=5.0,
                                                     retry_after=1.0, reconnect_max=0.5))
    try:
        with httpx.Client() as client:
            account = live.call(create_account(live.runtime))
            ids = [send(client, live, account, f"message {i}", TO) for i in range(messages)]
        with cli_smsc("--throttle-rate", "50", port=port) as smsc, httpx.Client() as client:
            for omnimessage_id in ids:
                wait_until(lambda i=omnimessage_id: status(client, live, account, i)["status"]
                           == "DELIVRD", timeout=90)
            stats = smsc.stats()
            assert stats["submitted"] == messages
            throttled_per_message = stats["throttled"] / messages
            print(f"throttled submits per message at a 50/s cap: {throttled_per_message:.2f}")
            assert throttled_per_message < 0.3, stats
            connector = live.runtime.channels["sms"].connectors["capped"]  # type: ignore[attr-defined]
            assert connector.send_rate is not None  # it holds a learned rate
    finally:
        live.stop()
