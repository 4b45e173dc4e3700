"""Small typed readers for JSON request bodies that fail with the field path at fault.

Each reader takes the value, its path (e.g. "messages[0].text") and raises `Invalid` (code 105,
"Invalid data") or `Missing` (code 106, "Missing data"), which every surface translates into its
own error format.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, NoReturn, TypeVar

T = TypeVar("T")


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
    value: Any, path: str, *, min_length: int = 0, max_length: int | None = None
) -> str:
    if not isinstance(value, str):
        fail(path, f"{path} must be a string")
    if len(value) < min_length:
        fail(path, f"{path} must not be empty" if min_length == 1 else
             f"{path} must have at least {min_length} characters")
    if max_length is not None and len(value) > max_length:
        fail(path, f"{path} must have at most {max_length} characters")
    return value


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


def url(value: Any, path: str) -> str:
    text = string(value, path, min_length=1, max_length=2048)
    if not text.lower().startswith(("http://", "https://")) or len(text) < 10:
        fail(path, f"{path} must be an http or https URL")
    return text


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
