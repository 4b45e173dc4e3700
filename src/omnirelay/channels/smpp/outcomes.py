"""What a submit_sm_resp command_status means for the attempt.

    command_status                          outcome
    ESME_ROK                                accepted; the message id becomes a provider_ref
    ESME_RTHROTTLED (0x58), ESME_RMSGQFUL   pause the connector (back-off), retry the part within
      (0x14)                                `retry_within`; then SendResult(retry_after=...)
    ESME_RSYSERR (0x08), ESME_RINVBNDSTS    transient: SendResult(retry_after=...)
      (0x04), ESME_RX_T_APPN (0x64)
    ESME_RINVDSTADR (0x0B)                  REJECTD, err 3 (invalid number)
    ESME_RINVDSTTON/NPI (0x50/0x51)         REJECTD, err 5 (invalid number format)
    ESME_RINVSRCADR (0x0A), RINVSRCTON/NPI  REJECTD, err 7 (sender name not allowed)
      (0x48/0x49)
    anything else (RSUBMITFAIL, RINVMSGLEN, FAILED, err 1 (delivery failure)
      RINVESMCLASS, vendor codes, ...)

No response at all (timeout) or a link lost with the submit outstanding: the SMSC may or may not have
taken the part, so it is never resent on the spot; the send reports retry_after and the engine tries the
whole message again later. That is at-least-once: the recipient may, rarely, get a message twice.
"""

from __future__ import annotations

from dataclasses import dataclass

from omnirelay.channels.smpp.pdu import Status as Esme
from omnirelay.core.statuses import Err, Status

THROTTLING = frozenset({Esme.RTHROTTLED, Esme.RMSGQFUL})
TRANSIENT = frozenset({Esme.RSYSERR, Esme.RINVBNDSTS, Esme.RX_T_APPN})

_PERMANENT: dict[int, tuple[Status, Err]] = {
    Esme.RINVDSTADR: (Status.REJECTD, Err.INVALID_NUMBER),
    Esme.RINVDSTTON: (Status.REJECTD, Err.INVALID_NUMBER_FORMAT),
    Esme.RINVDSTNPI: (Status.REJECTD, Err.INVALID_NUMBER_FORMAT),
    Esme.RINVSRCADR: (Status.REJECTD, Err.SENDER_NOT_ALLOWED),
    Esme.RINVSRCTON: (Status.REJECTD, Err.SENDER_NOT_ALLOWED),
    Esme.RINVSRCNPI: (Status.REJECTD, Err.SENDER_NOT_ALLOWED),
}


@dataclass(frozen=True, slots=True)
class Refusal:
    status: Status
    err: int


def permanent_refusal(command_status: int) -> Refusal:
    status, err = _PERMANENT.get(command_status, (Status.FAILED, Err.DELIVERY_FAILURE))
    return Refusal(status, int(err))
