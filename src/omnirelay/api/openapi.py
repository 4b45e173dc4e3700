"""The parts of /openapi.json that FastAPI cannot infer from handlers that read the raw request:
security schemes, error bodies, and response helpers with examples. Each surface builds its
operations' documentation (Routes.operation's openapi_extra) from these.

Examples are built with the same functions that build the real answers, so they cannot drift
from what the API sends.
"""

from __future__ import annotations

from typing import Any

import orjson

from omnirelay.api.errors import TITLES, error_item
from omnirelay.api.ratelimited import rate_limited_detail
from omnirelay.core.twilio.errors import TwilioError, authentication_error, not_found, twilio_error

MESSENTE_BASIC = "messenteBasic"
TWILIO_BASIC = "twilioBasic"
OPERATOR_BEARER = "operatorBearer"
SECURITY_SCHEMES: dict[str, dict[str, Any]] = {
    MESSENTE_BASIC: {"type": "http", "scheme": "basic",
                     "description": "The account's API username and password, as the Messente "
                                    "SDKs send them (`omnirelay account create` prints them)."},
    TWILIO_BASIC: {"type": "http", "scheme": "basic",
                   "description": "The account's AccountSid as the username and its AuthToken "
                                  "as the password, as the Twilio SDKs send them."},
    OPERATOR_BEARER: {"type": "http", "scheme": "bearer",
                      "description": "The operator API's `[admin] token`."},
    # Messente's legacy endpoints take the same username and password as query parameters.
    "apiUsername": {"type": "apiKey", "in": "query", "name": "username",
                    "description": "The account's API username (legacy endpoints)."},
    "apiPassword": {"type": "apiKey", "in": "query", "name": "password",
                    "description": "The account's API password (legacy endpoints)."},
}
LEGACY_CREDENTIALS: dict[str, list[str]] = {"apiUsername": [], "apiPassword": []}

NULLABLE_STRING: dict[str, Any] = {"type": ["string", "null"]}
UUID: dict[str, Any] = {"type": "string", "format": "uuid"}

MESSENTE_ERROR: dict[str, Any] = {
    "type": "object", "required": ["errors"], "title": "ErrorOmnichannel",
    "properties": {"errors": {"type": "array", "minItems": 1, "items": {
        "type": "object", "required": ["title", "detail", "code", "source"],
        "properties": {
            "title": {"type": "string", "enum": list(TITLES.values())},
            "detail": {"type": "string"},
            "code": {"type": "string", "enum": list(TITLES)},
            "source": {**NULLABLE_STRING,
                       "description": "the offending field's path, e.g. messages[0].text"},
        }}}},
}
TWILIO_ERROR: dict[str, Any] = {
    "type": "object", "required": ["code", "message", "more_info", "status"],
    "title": "TwilioError",
    "properties": {
        "code": {"type": "integer", "description": "Twilio's error code"},
        "message": {"type": "string"},
        "more_info": {"type": "string", "format": "uri"},
        "status": {"type": "integer", "description": "the HTTP status again"},
        "detail": {"type": "string", "description": "401 only"},
    },
}
RETRY_AFTER = {"Retry-After": {"description": "seconds to wait before trying again",
                                "schema": {"type": "integer"}}}
OPERATOR_REFUSED = "a valid operator token is required (Authorization: Bearer)"
UNAVAILABLE = "the database is unavailable; nothing was stored, try again shortly"
_RATE_LIMITED = rate_limited_detail(1)


def error_list(title: str, titles: dict[str, str], detail: str = "detail") -> dict[str, Any]:
    """The schema of an `{"errors": [{title, <detail>, code}]}` body, the shape the Phonebook,
    statistics and other Messente APIs share with their own codes and detail field."""
    return {
        "type": "object", "title": title, "required": ["errors"],
        "properties": {"errors": {"type": "array", "minItems": 1, "items": {
            "type": "object", "required": ["title", detail, "code"],
            "properties": {"title": {"type": "string", "enum": list(titles.values())},
                           detail: {"type": "string"},
                           "code": {"type": "string", "enum": list(titles)}}}}}}


def query_parameter(name: str, schema: dict[str, Any] | None = None, *,
                    description: str | None = None, required: bool = False) -> dict[str, Any]:
    """A query parameter as /openapi.json declares it (a string unless `schema` says)."""
    parameter: dict[str, Any] = {"name": name, "in": "query", "required": required,
                                 "schema": schema or {"type": "string"}}
    if description is not None:
        parameter["description"] = description
    return parameter


def json_content(schema: dict[str, Any], example: Any = None) -> dict[str, Any]:
    media: dict[str, Any] = {"schema": schema}
    if example is not None:
        media["example"] = example
    return {"application/json": media}


def answer(description: str, schema: dict[str, Any], example: Any = None,
           headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {"description": description,
                                "content": json_content(schema, example)}
    if headers:
        response["headers"] = headers
    return response


def messente_error(code: str, detail: str, source: str | None = None) -> dict[str, Any]:
    """The error body an answer with this code carries: {"errors": [...]}."""
    return {"errors": [error_item(code, detail, source)]}


def messente_errors(*statuses: int, invalid: tuple[str, str, str | None] | None = None,
                    missing: str = "no such resource", operator: bool = False
                    ) -> dict[str, Any]:
    """The error answers of an operation in Messente's format. `invalid`: the 400's example
    (code, detail, source); `missing`: the 404's detail; `operator`: the operator API's 401."""
    refused = (messente_error("103", OPERATOR_REFUSED) if operator
               else messente_error("103", "Wrong username or password"))
    described: dict[int, dict[str, Any]] = {
        400: answer("Invalid or missing data; `source` names the field", MESSENTE_ERROR,
                    messente_error(*(invalid or ("105", "Content-Type must be application/json",
                                                 None)))),
        401: answer("Missing or wrong credentials", MESSENTE_ERROR, refused,
                    {"WWW-Authenticate": {"schema": {"type": "string"}}}),
        404: answer("Not found, or not this account's", MESSENTE_ERROR,
                    messente_error("101", missing)),
        409: answer("Conflicts with what exists (a name already taken)", MESSENTE_ERROR,
                    messente_error("105", "an account named 'acme' exists already")),
        503: answer("The database is unavailable; nothing was stored", MESSENTE_ERROR,
                    messente_error("104", UNAVAILABLE), RETRY_AFTER),
        429: answer("Beyond the account's rate limit; nothing was stored", MESSENTE_ERROR,
                    messente_error("102", _RATE_LIMITED), RETRY_AFTER),
    }
    return {str(status): described[status] for status in statuses}


def twilio_errors(*statuses: int, invalid: TwilioError | None = None) -> dict[str, Any]:
    """The error answers of a Twilio operation, each an example of Twilio's error body."""
    examples: dict[int, tuple[str, TwilioError, dict[str, Any] | None]] = {
        400: ("An invalid or missing parameter (Twilio's code says which)",
              invalid or twilio_error(21604), None),
        401: ("Missing or wrong AccountSid or AuthToken", authentication_error(True),
              {"WWW-Authenticate": {"schema": {"type": "string"}}}),
        404: ("No such message, or an AccountSid other than the caller's",
              not_found("/2010-04-01/Accounts/AC00000000000000000000000000000000/Messages/"
                        "SM00000000000000000000000000000000.json"), None),
        503: ("The database is unavailable; nothing was stored",
              twilio_error(20503, detail=UNAVAILABLE), RETRY_AFTER),
        429: ("Beyond the account's rate limit; nothing was stored",
              twilio_error(20429, detail=_RATE_LIMITED), RETRY_AFTER),
    }
    documented: dict[str, Any] = {}
    for status in statuses:
        description, error, headers = examples[status]
        documented[str(status)] = answer(description, TWILIO_ERROR, error.body(), headers)
    return documented


def secured(scheme: str, doc: dict[str, Any]) -> dict[str, Any]:
    return {"security": [{scheme: []}], **doc}


def legacy(doc: dict[str, Any]) -> dict[str, Any]:
    """A legacy endpoint's documentation: credentials in the query, every answer a 200."""
    return {"security": [LEGACY_CREDENTIALS], **doc}


def text_answer(description: str, example: str, media_type: str = "text/plain"
                ) -> dict[str, Any]:
    return {"description": description,
            "content": {media_type: {"schema": {"type": "string"}, "example": example}}}


def finish(schema: dict[str, Any]) -> None:
    """Drop FastAPI's own 422, which no route answers (bad input is answered in the surface's
    format), and declare the security schemes the operations use."""
    used: set[str] = set()
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.get("responses", {})
            if "HTTPValidationError" in orjson.dumps(responses.get("422")).decode():
                del responses["422"]
            for response in responses.values():
                # FastAPI's placeholder for an answer it knows nothing of, where the route
                # documents its own media types (text, CSV, XML).
                content = response.get("content", {})
                if content.get("application/json") == {"schema": {}} and len(content) > 1:
                    del content["application/json"]
            for requirement in operation.get("security", ()):
                used.update(requirement)
    components = schema.setdefault("components", {})
    schemas = components.get("schemas", {})
    if '"#/components/schemas/HTTPValidationError"' not in orjson.dumps(schema).decode():
        for name in ("HTTPValidationError", "ValidationError"):
            schemas.pop(name, None)
    if not schemas:
        components.pop("schemas", None)
    if used:
        components["securitySchemes"] = {name: SECURITY_SCHEMES[name] for name in sorted(used)}
    if not components:
        schema.pop("components")
