"""WhatsApp message templates: Messente's template-management shapes, and Meta's.

Messente's API (tag WhatsApp Templates) spells enum values in lower case (`utility`,
`approved`, `body`, `quick_reply`); the Cloud API's message-template endpoints spell the same
values in upper case. Everything here is pure: reading and checking request bodies and list
queries, the mapping both ways, the sandbox's review rule and its list cursors.

Values Meta answers that Messente's enums lack (a header `IMAGE`, a `CAROUSEL` component, an
`ARCHIVED` status, a legacy category) cannot pass through: the official SDK refuses a value
outside its enums. A component's or button's unknown `type`/`format`/`otp_type` is left out,
an unknown status reads as `disabled` (the template cannot be sent) and the legacy categories
map to their successors.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from omnirelay.core import validation as v
from omnirelay.core.base64url import b64url_decode, b64url_encode

CATEGORIES = ("authentication", "marketing", "utility")
STATUSES = ("approved", "in_appeal", "rejected", "pending", "pending_deletion", "deleted",
            "disabled", "paused", "limit_exceeded")
COMPONENT_TYPES = ("body", "header", "footer", "buttons")
HEADER_FORMATS = ("text",)
BUTTON_TYPES = ("quick_reply", "phone_number", "otp", "url", "catalog", "flow", "copy_code")
OTP_TYPES = ("copy_code", "one_tap", "zero_tap")
# Meta's older category names, still found on old templates
LEGACY_CATEGORIES = {"transactional": "utility", "otp": "authentication"}

DEFAULT_LIMIT = 25
MAX_LIMIT = 500
MAX_NAME = 512
MAX_BUTTONS = 10
# Meta's limits on a component's text
TEXT_LIMITS = {"body": 1024, "header": 60, "footer": 60, "buttons": 1024}
BUTTON_LIMITS = {"text": 25, "phone_number": 20, "url": 2000, "autofill_text": 25}
_NAME = re.compile(r"[a-z0-9_]+")
_LANGUAGE = re.compile(r"[a-z]{2,3}(_[A-Za-z0-9]{2,4})?")
_ID = re.compile(r"[0-9]{1,32}")
# Sandbox review: a name with this prefix is rejected, every other one approved.
REJECT_PREFIX = "reject_"


class TemplateError(Exception):
    """An answer in Messente's error shape: code 101 (404), 102 (403), 104 (500 or 503), 105/106
    (400)."""

    def __init__(self, code: str, detail: str, source: str | None = None, *,
                 status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.source = source
        self.status = status
        self.retry_after = retry_after


def not_found(template_id: str, waba_id: str) -> TemplateError:
    return TemplateError("101", f"template {template_id} not found in WABA {waba_id}")


# --- requests -------------------------------------------------------------------------------------


def identifier(value: str, name: str) -> str:
    """A WABA or template id: digits only, as Meta issues them (so nothing else can reach a
    Graph API path)."""
    if not _ID.fullmatch(value):
        raise TemplateError("105", f"{name} must be a string of at most 32 digits", name)
    return value


@dataclass(frozen=True, slots=True)
class NewTemplate:
    name: str
    language: str
    category: str
    components: list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class TemplateChanges:
    category: str | None
    components: list[dict[str, Any]] | None


@dataclass(frozen=True, slots=True)
class ListQuery:
    limit: int = DEFAULT_LIMIT
    before: str | None = None
    after: str | None = None
    category: str | None = None
    content: str | None = None
    language: str | None = None
    name: str | None = None
    status: str | None = None


def parse_new_template(body: Any) -> NewTemplate:
    data = v.fields(v.obj(body, ""), "", ("name", "category", "language", "components"))
    name = v.string(v.required(data, "name", ""), "name", min_length=1, max_length=MAX_NAME)
    if not _NAME.fullmatch(name):
        v.fail("name", "name may hold only lower-case letters, digits and underscores")
    language = language_code(v.required(data, "language", ""), "language")
    category = v.one_of(v.required(data, "category", ""), "category", CATEGORIES)
    components = parse_components(v.required(data, "components", ""))
    return NewTemplate(name, language, category, components)


def parse_changes(body: Any) -> TemplateChanges:
    data = v.fields(v.obj(body, ""), "", ("category", "components"))
    if not data:
        v.fail(None, "give category, components or both")
    category = (v.one_of(data["category"], "category", CATEGORIES)
                if "category" in data else None)
    components = parse_components(data["components"]) if "components" in data else None
    return TemplateChanges(category, components)


def language_code(value: Any, path: str) -> str:
    code = v.string(value, path, min_length=2, max_length=16)
    if not _LANGUAGE.fullmatch(code):
        v.fail(path, f"{path} must be a language code such as en or en_US")
    return code


def parse_components(value: Any) -> list[dict[str, Any]]:
    components = v.array(value, "components", _component, min_items=1,
                         max_items=len(COMPONENT_TYPES))
    kinds = [c["type"] for c in components]
    for kind in set(kinds):
        if kinds.count(kind) > 1:
            v.fail("components", f"components may hold one {kind} component at most")
    if "body" not in kinds:
        v.fail("components", "components must include a body component")
    return components


def _object(value: Any, path: str) -> dict[str, Any]:
    """A JSON object without the empty `additional_properties` that the official Python SDK
    (2.7.0) puts into every nested object of an update request (it dumps its pydantic models
    whole there)."""
    data = v.obj(value, path)
    if data.get("additional_properties") == {}:
        data = {k: item for k, item in data.items() if k != "additional_properties"}
    return data


def _component(value: Any, path: str) -> dict[str, Any]:
    data = v.fields(_object(value, path), path, ("type", "format", "text", "example", "buttons"))
    kind = v.one_of(v.required(data, "type", path), v.join(path, "type"), COMPONENT_TYPES)
    out: dict[str, Any] = {"type": kind}
    if "format" in data:
        out["format"] = v.one_of(data["format"], v.join(path, "format"), HEADER_FORMATS)
    if "text" in data:
        out["text"] = v.text(data["text"], v.join(path, "text"), min_length=1,
                             max_length=TEXT_LIMITS[kind])
    elif kind in ("body", "footer"):
        raise v.Missing(v.join(path, "text"), f"{v.join(path, 'text')} is required")
    if "example" in data:
        out["example"] = _example(data["example"], v.join(path, "example"))
    if "buttons" in data:
        out["buttons"] = v.array(data["buttons"], v.join(path, "buttons"), _button,
                                 min_items=1, max_items=MAX_BUTTONS)
    elif kind == "buttons":
        raise v.Missing(v.join(path, "buttons"), f"{v.join(path, 'buttons')} is required")
    return out


def _example(value: Any, path: str) -> dict[str, Any]:
    data = v.fields(_object(value, path), path, ("header_text", "body_text"))
    out: dict[str, Any] = {}
    if "header_text" in data:
        out["header_text"] = v.array(data["header_text"], v.join(path, "header_text"),
                                     lambda s, p: v.text(s, p, max_length=1024), max_items=100)
    if "body_text" in data:
        out["body_text"] = v.array(
            data["body_text"], v.join(path, "body_text"),
            lambda row, p: v.array(row, p, lambda s, q: v.text(s, q, max_length=1024),
                                   max_items=100), max_items=10)
    return out


def _button(value: Any, path: str) -> dict[str, Any]:
    data = v.fields(_object(value, path), path, ("type", "otp_type", "autofill_text",
                                                "supported_apps", "text", "phone_number",
                                                "url"))
    out: dict[str, Any] = {"type": v.one_of(v.required(data, "type", path),
                                            v.join(path, "type"), BUTTON_TYPES)}
    if "otp_type" in data:
        out["otp_type"] = v.one_of(data["otp_type"], v.join(path, "otp_type"), OTP_TYPES)
    for key, limit in BUTTON_LIMITS.items():
        if key in data:
            out[key] = v.string(data[key], v.join(path, key), min_length=1, max_length=limit)
    if "supported_apps" in data:
        out["supported_apps"] = v.array(data["supported_apps"], v.join(path, "supported_apps"),
                                        _supported_app, max_items=5)
    return out


def _supported_app(value: Any, path: str) -> dict[str, Any]:
    data = v.fields(_object(value, path), path, ("package_name", "signature_hash"))
    return {key: v.string(v.required(data, key, path), v.join(path, key), min_length=1,
                          max_length=256) for key in ("package_name", "signature_hash")}


def parse_list_query(params: Mapping[str, str]) -> ListQuery:
    known = {"limit", "before", "after", "category", "content", "language", "name", "status"}
    for key in params:
        if key not in known:
            raise TemplateError("105", f"unknown query parameter {key!r}", key)

    def text(key: str, limit: int = 512) -> str | None:
        value = params.get(key)
        if value is None or value == "":
            return None
        try:
            return v.string(value, key, max_length=limit)
        except v.RequestError as exc:
            raise TemplateError("105", exc.detail, key) from None

    def choice(key: str, options: tuple[str, ...]) -> str | None:
        value = text(key)
        if value is not None and value not in options:
            raise TemplateError("105", f"{key} must be one of {', '.join(options)}", key)
        return value

    limit = DEFAULT_LIMIT
    if (raw := text("limit")) is not None:
        if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
            raise TemplateError("105", f"limit must be an integer from 1 to {MAX_LIMIT}",
                                "limit")
        limit = int(raw)
    if params.get("before") and params.get("after"):
        raise TemplateError("105", "give before or after, not both", "before")
    return ListQuery(limit=limit, before=text("before"), after=text("after"),
                     category=choice("category", CATEGORIES), content=text("content"),
                     language=text("language", 16), name=text("name"),
                     status=choice("status", STATUSES))


# --- Messente -> Cloud API ------------------------------------------------------------------------


def _upper(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


def cloud_components(components: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for component in components:
        item = dict(component)
        item["type"] = _upper(item["type"])
        if "format" in item:
            item["format"] = _upper(item["format"])
        if "buttons" in item:
            item["buttons"] = [{**b, "type": _upper(b["type"]),
                                **({"otp_type": _upper(b["otp_type"])} if "otp_type" in b
                                   else {})} for b in item["buttons"]]
        out.append(item)
    return out


def cloud_new_template(template: NewTemplate) -> dict[str, Any]:
    return {"name": template.name, "language": template.language,
            "category": template.category.upper(),
            "components": cloud_components(template.components)}


def cloud_changes(changes: TemplateChanges) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if changes.category is not None:
        body["category"] = changes.category.upper()
    if changes.components is not None:
        body["components"] = cloud_components(changes.components)
    return body


def cloud_list_params(query: ListQuery) -> dict[str, str]:
    params = {"limit": str(query.limit)}
    for key in ("before", "after", "content", "language", "name"):
        if (value := getattr(query, key)) is not None:
            params[key] = value
    if query.category is not None:
        params["category"] = query.category.upper()
    if query.status is not None:
        params["status"] = query.status.upper()
    return params


# --- Cloud API -> Messente ------------------------------------------------------------------------


def _lower(value: Any, options: tuple[str, ...]) -> str | None:
    text = value.lower() if isinstance(value, str) else None
    return text if text in options else None


def messente_category(value: Any) -> str:
    text = value.lower() if isinstance(value, str) else ""
    return LEGACY_CATEGORIES.get(text, text if text in CATEGORIES else "utility")


def messente_status(value: Any) -> str:
    return _lower(value, STATUSES) or "disabled"


def messente_components(components: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for component in components if isinstance(components, list) else []:
        if not isinstance(component, dict):
            continue
        item: dict[str, Any] = {}
        if (kind := _lower(component.get("type"), COMPONENT_TYPES)) is not None:
            item["type"] = kind
        if (header := _lower(component.get("format"), HEADER_FORMATS)) is not None:
            item["format"] = header
        if isinstance(component.get("text"), str):
            item["text"] = component["text"]
        example = component.get("example")
        if isinstance(example, dict):
            item["example"] = {k: example[k] for k in ("header_text", "body_text")
                               if isinstance(example.get(k), list)}
        if isinstance(component.get("buttons"), list):
            item["buttons"] = [_messente_button(b) for b in component["buttons"]
                               if isinstance(b, dict)]
        out.append(item)
    return out


def _messente_button(button: dict[str, Any]) -> dict[str, Any]:
    item: dict[str, Any] = {}
    if (kind := _lower(button.get("type"), BUTTON_TYPES)) is not None:
        item["type"] = kind
    if (otp := _lower(button.get("otp_type"), OTP_TYPES)) is not None:
        item["otp_type"] = otp
    for key in ("autofill_text", "text", "phone_number", "url"):
        if isinstance(button.get(key), str):
            item[key] = button[key]
    apps = button.get("supported_apps")
    if isinstance(apps, list):
        item["supported_apps"] = [
            {k: a[k] for k in ("package_name", "signature_hash") if isinstance(a.get(k), str)}
            for a in apps if isinstance(a, dict)]
    return item


def messente_template(template: Mapping[str, Any]) -> dict[str, Any]:
    return {"id": str(template.get("id") or ""), "name": str(template.get("name") or ""),
            "language": str(template.get("language") or ""),
            "category": messente_category(template.get("category")),
            "status": messente_status(template.get("status")),
            "components": messente_components(template.get("components"))}


def messente_created(answer: Mapping[str, Any], requested_category: str) -> dict[str, Any]:
    return {"id": str(answer.get("id") or ""),
            "status": messente_status(answer.get("status")),
            "category": messente_category(answer.get("category") or requested_category)}


# --- the sandbox ----------------------------------------------------------------------------------


def reviewed(name: str) -> str:
    """What the sandbox's review decides for a pending template: deterministic, so tests and
    demos can read both outcomes."""
    return "rejected" if name.startswith(REJECT_PREFIX) else "approved"


def search_text(components: list[dict[str, Any]]) -> str:
    """What the list's `content` filter searches: the components' texts, lower-cased."""
    return "\n".join(c["text"] for c in components if isinstance(c.get("text"), str)).lower()


def encode_cursor(*parts: str) -> str:
    return b64url_encode("|".join(parts).encode())


def decode_cursor(cursor: str, source: str, count: int) -> list[str]:
    try:
        text = b64url_decode(cursor).decode()
    except ValueError:  # not base64, or not UTF-8 (UnicodeDecodeError is a ValueError)
        text = ""
    parts = text.split("|")
    if len(parts) != count or not all(parts):
        raise TemplateError("105", f"{source} is not a cursor this API gave out", source)
    return parts
