"""The pure parts of WhatsApp template management: reading requests, the mapping to and from
Meta's shapes, the sandbox's review rule and cursors."""

from __future__ import annotations

import pytest

from omnirelay.core import whatsapp_templates as wt
from omnirelay.core.validation import RequestError


def test_a_template_maps_to_metas_shape_and_back() -> None:
    template = wt.parse_new_template({
        "name": "otp_code", "language": "en_GB", "category": "authentication",
        "components": [{"type": "body", "text": "Code {{1}}", "additional_properties": {}},
                       {"type": "buttons", "buttons": [
                           {"type": "otp", "otp_type": "one_tap", "text": "Fill",
                            "autofill_text": "Autofill", "supported_apps": [
                                {"package_name": "com.example", "signature_hash": "K8a/AINcGX7"}]}]}]})
    cloud = wt.cloud_new_template(template)
    assert cloud["category"] == "AUTHENTICATION"
    assert [c["type"] for c in cloud["components"]] == ["BODY", "BUTTONS"]
    assert cloud["components"][1]["buttons"][0]["otp_type"] == "ONE_TAP"
    back = wt.messente_template({"id": 7, "status": "APPROVED", **cloud})
    assert back == {"id": "7", "name": "otp_code", "language": "en_GB",
                    "category": "authentication", "status": "approved",
                    "components": template.components}


@pytest.mark.parametrize(("body", "source"), [
    ({"name": "a", "language": "english", "category": "utility",
      "components": [{"type": "body", "text": "x"}]}, "language"),
    ({"name": "a", "language": "en", "category": "utility",
      "components": [{"type": "body", "text": "x"}, {"type": "body", "text": "y"}]},
     "components"),
    ({"name": "a", "language": "en", "category": "utility",
      "components": [{"type": "body", "text": "x" * 1025}]}, "components[0].text"),
    ({"name": "a", "language": "en", "category": "utility",
      "components": [{"type": "body", "text": "x"}, {"type": "buttons", "buttons": [
          {"type": "quick_reply", "text": "t" * 26}]}]}, "components[1].buttons[0].text"),
    ({"name": "a\u0000", "language": "en", "category": "utility",
      "components": [{"type": "body", "text": "x"}]}, "name"),
])
def test_bad_templates_are_refused_with_the_field(body: dict[str, object], source: str) -> None:
    with pytest.raises(RequestError) as caught:
        wt.parse_new_template(body)
    assert caught.value.source == source


def test_review_rule_and_cursors() -> None:
    assert wt.reviewed("order_update") == "approved"
    assert wt.reviewed("reject_order") == "rejected"
    cursor = wt.encode_cursor("2026-01-02T03:04:05", "123")
    assert wt.decode_cursor(cursor, "after", 2) == ["2026-01-02T03:04:05", "123"]
    for bad in ("", "!!", wt.encode_cursor("only-one")):
        with pytest.raises(wt.TemplateError):
            wt.decode_cursor(bad, "after", 2)
    with pytest.raises(wt.TemplateError, match="not both"):
        wt.parse_list_query({"before": "a", "after": "b"})
    assert wt.cloud_list_params(wt.parse_list_query({"status": "paused", "limit": "5"})) == \
        {"limit": "5", "status": "PAUSED"}
