"""What the simulated SMSC does with a message, chosen by the destination number.

Default rules (the destination's last digits; anything else is delivered):

    ...999  refused at submit with ESME_RINVDSTADR   (the channel reports REJECTD, err 3)
    ...998  refused at submit with ESME_RSUBMITFAIL  (FAILED, err 1)
    ...997  receipt stat:UNDELIV err:001
    ...996  receipt stat:EXPIRED
    ...995  no receipt at all
    ...994  receipt stat:REJECTD
    ...993  receipt stat:DELETED
    ...992  receipt stat:UNKNOWN
    else    receipt stat:DELIVRD err:000

A rule is `Rule(suffix=..., action=...)` or `Rule(prefix=..., action=...)`; the action is a receipt
state (DELIVRD, UNDELIV, EXPIRED, DELETED, REJECTD, UNKNOWN, ACCEPTD, ENROUTE), "noreceipt", or
"reject:<ESME name or number>" such as "reject:RINVDSTADR" or "reject:0x45". `parse_rule("997=UNDELIV")`
reads the CLI form (suffix=action; a leading ^ makes it a prefix).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from omnirelay.channels.smpp.pdu import Status as Esme

RECEIPT_STATES = frozenset({"DELIVRD", "UNDELIV", "EXPIRED", "DELETED", "REJECTD", "UNKNOWN", "ACCEPTD",
                            "ENROUTE"})
MESSAGE_STATE = {"ENROUTE": 1, "DELIVRD": 2, "EXPIRED": 3, "DELETED": 4, "UNDELIV": 5, "ACCEPTD": 6,
                 "UNKNOWN": 7, "REJECTD": 8}


@dataclass(frozen=True, slots=True)
class Outcome:
    reject_status: int = 0  # non-zero: refuse the submit_sm with this command_status
    receipt: str | None = "DELIVRD"  # receipt state, None for no receipt

    @property
    def err(self) -> int:
        return 0 if self.receipt in ("DELIVRD", "ACCEPTD", "ENROUTE") else 1


@dataclass(frozen=True, slots=True)
class Rule:
    action: str
    suffix: str = ""
    prefix: str = ""

    def matches(self, destination: str) -> bool:
        number = destination.lstrip("+")
        return number.endswith(self.suffix) and number.startswith(self.prefix.lstrip("+"))

    def outcome(self) -> Outcome:
        return parse_action(self.action)


def parse_action(action: str) -> Outcome:
    text = action.strip()
    if text.lower().startswith("reject:"):
        code = text.split(":", 1)[1].strip().upper().removeprefix("ESME_")
        try:
            status = int(code, 0) if code[:1].isdigit() else int(Esme[code])
        except (KeyError, ValueError) as error:
            raise ValueError(f"unknown command_status in rule action {action!r}") from error
        return Outcome(reject_status=status, receipt=None)
    if text.lower() == "noreceipt":
        return Outcome(receipt=None)
    if text.upper() in RECEIPT_STATES:
        return Outcome(receipt=text.upper())
    raise ValueError(f"unknown rule action {action!r}")


def parse_rule(spec: str) -> Rule:
    """`997=UNDELIV` (suffix) or `^+44=reject:RINVDSTADR` (prefix)."""
    match, _, action = spec.partition("=")
    if not action:
        raise ValueError(f"a rule is MATCH=ACTION, not {spec!r}")
    parse_action(action)
    if match.startswith("^"):
        return Rule(action=action, prefix=match[1:])
    return Rule(action=action, suffix=match)


DEFAULT_RULES: tuple[Rule, ...] = (
    Rule("reject:RINVDSTADR", suffix="999"),
    Rule("reject:RSUBMITFAIL", suffix="998"),
    Rule("UNDELIV", suffix="997"),
    Rule("EXPIRED", suffix="996"),
    Rule("noreceipt", suffix="995"),
    Rule("REJECTD", suffix="994"),
    Rule("DELETED", suffix="993"),
    Rule("UNKNOWN", suffix="992"),
)


def decide(rules: Sequence[Rule], destination: str) -> Outcome:
    for rule in rules:
        if rule.matches(destination):
            return rule.outcome()
    return Outcome()
