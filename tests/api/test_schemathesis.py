"""Schemathesis against the app's own OpenAPI document: no generated request gets a 5xx.

Every operation of `/openapi.json` (both surfaces, and whatever else the app serves) gets
schema-conforming (positive) and schema-violating (negative) requests over real HTTP, with a dev
account's credentials so that the handlers past authentication are reached: Hypothesis-generated
ones, derandomized (a fixed seed) with a bounded number of examples, and schemathesis's
deterministic coverage cases. So a run is repeatable and short.
"""

from __future__ import annotations

import base64
from typing import Any

import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from omnirelay.store.queries import Account
from tests.support import LiveServer

EXAMPLES = 15  # per operation and generation mode
TWILIO_PREFIX = "/2010-04-01/"


def basic(username: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def test_no_generated_request_gets_a_server_error(server: LiveServer, account: Account) -> None:
    schema = schemathesis.openapi.from_url(server.base_url + "/openapi.json")
    messente = basic(account.api_username, account.api_password)
    twilio = basic(account.twilio_account_sid, account.twilio_auth_token)
    errors: list[str] = []
    sent: dict[str, int] = {}
    unsatisfiable: list[str] = []

    def call(label: str, case: Any, headers: dict[str, str]) -> None:
        response = case.call(base_url=server.base_url, headers=headers, timeout=30)
        sent[label] = sent.get(label, 0) + 1
        if response.status_code >= 500:
            errors.append(f"{response.status_code} for {case.as_curl_command()}: "
                          f"{response.text[:300]}")

    def exercise(label: str, strategy: Any, headers: dict[str, str]) -> None:
        @settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
                  phases=[Phase.explicit, Phase.generate],
                  suppress_health_check=list(HealthCheck))
        @given(case=strategy)
        def run(case: Any) -> None:
            call(label, case, headers)

        try:
            run()
        except Unsatisfiable:
            # A negative mode with nothing to violate (e.g. only a free-form path segment).
            unsatisfiable.append(label)

    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 9, [op.label for op in operations]
    for operation in operations:
        is_twilio = operation.path.startswith(TWILIO_PREFIX)
        # Without a body or a query there is nothing to violate but a free-form path
        # segment: Hypothesis would search in vain.
        modes = ([GenerationMode.POSITIVE, GenerationMode.NEGATIVE]
                 if operation.body or operation.query else [GenerationMode.POSITIVE])
        for mode in modes:
            # Positive cases stay inside the account, so they reach the handlers' own rules;
            # negative ones may mangle the path too.
            fixed = ({"account_sid": account.twilio_account_sid}
                     if is_twilio and mode is GenerationMode.POSITIVE else None)
            exercise(f"{operation.label} ({mode.value})",
                     operation.as_strategy(generation_mode=mode, path_parameters=fixed),
                     twilio if is_twilio else messente)
        # Schemathesis's coverage phase: deterministic boundary values and violations of each
        # parameter's schema (one past a maximum, a wrong type, a missing required field).
        label = f"{operation.label} (coverage)"
        for case in schema.iter_coverage_cases(
                operation, generation_modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
                generation_config=schema.config.generation_for(operation=operation)):
            if is_twilio and case.path_parameters:
                case.path_parameters = {**case.path_parameters,
                                        "account_sid": account.twilio_account_sid}
            call(label, case, twilio if is_twilio else messente)

    total = sum(sent.values())
    print(f"schemathesis: {total} requests over {len(operations)} operations, "
          f"{len(errors)} server errors; per operation and mode: {sent}; "
          f"nothing to generate: {unsatisfiable}")
    assert not errors, f"{len(errors)} of {total} requests got a 5xx:\n" + "\n".join(errors[:20])
    assert all(sent.get(f"{op.label} (positive)", 0) > 0 for op in operations), sent
