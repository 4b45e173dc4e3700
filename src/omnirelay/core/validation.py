"""Small typed readers for JSON request bodies that fail with the field path at fault.

Each reader takes the value, its path (e.g. "messages[0].text") and raises `Invalid` (code 105,
"Invalid data") or `Missing` (code 106, "Missing data"), which every surface translates into its
own error format.

Whatever passes these readers must also pass the store: a value the database refuses (a NUL in a
PostgreSQL text column) would fail the whole group commit it joins, other accounts' requests
included. So every string is bounded in length and free of control characters.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NoReturn, TypeVar
from urllib.parse import urlsplit

T = TypeVar("T")

# The longest string a field without a documented limit of its own may hold.
MAX_STRING = 4096
MAX_URL = 2048
MAX_JSON_DEPTH = 16
# C0 controls and DEL. Free text may hold tab, line feed and carriage return; nothing may hold
# NUL, which PostgreSQL cannot store and no channel can carry.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_CONTROL_IN_TEXT = re.compile(r"[\x00-\x08\x0b-\x0c\x0e-\x1f\x7f]")
_HOST = re.compile(r"^(?:\[[0-9A-Fa-f:.]+\]|[^\x00-\x2c/:;<=>?@\[\\\]^`{|}~\x7f]+)$")


class RequestError(ValueError):
    code = "105"
    title = "Invalid data"

    def __init__(self, source: str | None, detail: str) -> None:
        super().__init__(detail)
        self.source = source
        self.detail = detail


class Invalid(RequestError):
    pass


class Missing(RequestError):
    code = "106"
    title = "Missing data"


MISSING: Any = object()


def fail(source: str | None, detail: str) -> NoReturn:
    raise Invalid(source, detail)


def join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def obj(value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        fail(path or None, f"{path or 'the body'} must be a JSON object")
    return value


def fields(body: Mapping[str, Any], path: str, allowed: Iterable[str]) -> dict[str, Any]:
    """The body's fields with JSON nulls dropped (SDKs send null for unset optionals); any name
    outside `allowed` is rejected so that a typo never passes silently."""
    allowed_set = set(allowed)
    present: dict[str, Any] = {}
    for key, value in body.items():
        if key not in allowed_set:
            fail(join(path, key), f"unknown field {join(path, key)!r}")
        if value is not None:
            present[key] = value
    return present


def required(body: Mapping[str, Any], key: str, path: str) -> Any:
    value = body.get(key, MISSING)
    if value is MISSING or value is None:
        raise Missing(join(path, key), f"{join(path, key)} is required")
    return value


def string(
    value: Any, path: str, *, min_length: int = 0, max_length: int | None = MAX_STRING,
    multiline: bool = False,
) -> str:
    """A string of bounded length without control characters; `multiline` text may hold tab,
    line feed and carriage return. `max_length=None` only where another rule bounds the length
    (an SMS text by its part count)."""
    if not isinstance(value, str):
        fail(path, f"{path} must be a string")
    if len(value) < min_length:
        fail(path, f"{path} must not be empty" if min_length == 1 else
             f"{path} must have at least {min_length} characters")
    if max_length is not None and len(value) > max_length:
        fail(path, f"{path} must have at most {max_length} characters")
    control = control_character(value, multiline=multiline)
    if control is not None:
        fail(path, f"{path} must not contain control characters (found {control})")
    return value


def text(value: Any, path: str, *, min_length: int = 0,
         max_length: int | None = MAX_STRING) -> str:
    """Free text: a message body, a caption, a template parameter."""
    return string(value, path, min_length=min_length, max_length=max_length, multiline=True)


def control_character(value: str, *, multiline: bool = False) -> str | None:
    """The first control character `value` must not hold, as U+XXXX, or None."""
    found = (_CONTROL_IN_TEXT if multiline else _CONTROL).search(value)
    return None if found is None else f"U+{ord(found.group()):04X}"


def integer(value: Any, path: str, *, minimum: int | None = None,
            maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        fail(path, f"{path} must be an integer")
    if minimum is not None and value < minimum:
        fail(path, f"{path} must be at least {minimum}")
    if maximum is not None and value > maximum:
        fail(path, f"{path} must be at most {maximum}")
    return value


def boolean(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        fail(path, f"{path} must be true or false")
    return value


def one_of(value: Any, path: str, choices: Iterable[str]) -> str:
    options = list(choices)
    if not isinstance(value, str) or value not in options:
        fail(path, f"{path} must be one of {', '.join(options)}")
    return value


def url(value: Any, path: str, *, callback: bool = False) -> str:
    """An http(s) URL. A `callback` URL, one the gateway itself calls, may not carry userinfo:
    credentials belong in the receiver's configuration, not in a URL stored and logged with
    every report."""
    if not isinstance(value, str) or not value:
        fail(path, f"{path} must be an http or https URL")
    problem = url_problem(value, max_length=MAX_URL, allow_userinfo=not callback)
    if problem is not None:
        fail(path, f"{path} must be an http or https URL: {problem}")
    return value


def url_problem(value: str, *, max_length: int = MAX_URL, allow_userinfo: bool = True
                ) -> str | None:
    """Why `value` is not an acceptable http(s) URL, or None. Checked on the text as given:
    urlsplit silently drops tabs and line breaks, and an HTTP client would strip spaces, so a URL
    is refused rather than quietly changed into another one."""
    if len(value) > max_length:
        return f"at most {max_length} characters"
    if any(c.isspace() for c in value):
        return "it contains whitespace (percent-encode spaces as %20)"
    control = control_character(value)
    if control is not None:
        return f"it contains the control character {control}"
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as exc:
        return f"it is malformed ({exc})"
    if parts.scheme.lower() not in ("http", "https"):
        return "the scheme must be http or https"
    host = parts.netloc.rpartition("@")[2]
    if port is not None or host.endswith(":"):
        host = host.rpartition(":")[0]
    if not host or not _HOST.fullmatch(host):
        return "the host is missing or not a valid host name"
    if port == 0 or (port is None and parts.netloc.endswith(":")):
        return "the port must be a number from 1 to 65535"
    if "@" in parts.netloc and not allow_userinfo:
        return "user:password@ is not allowed; set credentials on the receiver instead"
    return None


def json_value(value: Any, path: str, depth: int = 0) -> Any:
    """An opaque JSON value passed through to a channel (an RCS card): every string in it is
    bounded and free of NUL, and it nests at most MAX_JSON_DEPTH deep."""
    if depth > MAX_JSON_DEPTH:
        fail(path, f"{path} nests deeper than {MAX_JSON_DEPTH} levels")
    if isinstance(value, str):
        text(value, path)
    elif isinstance(value, dict):
        for key, item in value.items():
            string(key, join(path, "(a key)"))
            json_value(item, join(path, key), depth + 1)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            json_value(item, join(path, index), depth + 1)
    return value


def array(
    value: Any,
    path: str,
    item: Callable[[Any, str], T],
    *,
    min_items: int = 0,
    max_items: int | None = None,
) -> list[T]:
    if not isinstance(value, list):
        fail(path, f"{path} must be an array")
    if len(value) < min_items:
        fail(path, f"{path} must have at least {min_items} item(s)")
    if max_items is not None and len(value) > max_items:
        fail(path, f"{path} must have at most {max_items} items")
    return [item(element, join(path, index)) for index, element in enumerate(value)]


def exactly_one(body: Mapping[str, Any], path: str, names: Iterable[str]) -> str:
    options = list(names)
    present = [name for name in options if name in body]
    if len(present) != 1:
        fail(path, f"{path} must have exactly one of {', '.join(options)}")
    return present[0]
