"""The API surfaces' routes: plain Starlette routes, documented in FastAPI's OpenAPI schema.

The handlers read the raw request and return ready Responses, so what a FastAPI route does on
every request (solving dependencies, validating parameters, opening exit stacks) buys them
nothing. They are served as Starlette routes instead. /openapi.json and /docs still list them:
each route can build the FastAPI route it would have been, which is used for the schema only and
never serves a request.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from fastapi.utils import deep_dict_update
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Route
from starlette.types import Scope

from omnirelay.api import openapi

Endpoint = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class Operation:
    """One method of one path: its endpoint, and what /docs says about it."""

    method: str
    path: str
    endpoint: Endpoint
    summary: str
    tags: tuple[str, ...] = ()
    status_code: int | None = None
    openapi_extra: dict[str, Any] | None = None


class Routes:
    """A surface's operations, declared next to their endpoints as on a FastAPI router."""

    def __init__(self, *, tags: Iterable[str] = ()) -> None:
        self.tags = tuple(tags)
        self.operations: list[Operation] = []

    def operation(self, method: str, path: str, *, summary: str, tags: Iterable[str] = (),
                  status_code: int | None = None, openapi_extra: dict[str, Any] | None = None
                  ) -> Callable[[Endpoint], Endpoint]:
        def register(endpoint: Endpoint) -> Endpoint:
            self.operations.append(Operation(method, path, endpoint, summary,
                                             (*self.tags, *tags), status_code, openapi_extra))
            return endpoint

        return register

    def mount(self, prefix: str = "", *, include_in_schema: bool = True) -> list[LeanRoute]:
        """The routes to append to an app's router, each path under `prefix`."""
        return [LeanRoute(op, prefix, include_in_schema=include_in_schema)
                for op in self.operations]


class LeanRoute(Route):
    def __init__(self, operation: Operation, prefix: str, *, include_in_schema: bool) -> None:
        super().__init__(prefix + operation.path, operation.endpoint, methods=[operation.method],
                         include_in_schema=include_in_schema)
        # Starlette would also answer HEAD wherever GET is allowed. FastAPI's routes did not;
        # HEAD stays a 405 in the surface's error format, as before.
        assert self.methods is not None
        self.methods.discard("HEAD")
        self.operation = operation

    def documentation(self) -> APIRoute:
        """The FastAPI route this would have been, for FastAPI to document; never mounted."""
        op = self.operation
        tags: list[str | Enum] = [*op.tags]
        return APIRoute(self.path, _StandIn(op.endpoint, self.param_convertors), methods=[op.method],
                        name=self.name, summary=op.summary, tags=tags,
                        status_code=op.status_code)


class _StandIn:
    """Stands in for a lean endpoint while FastAPI documents it: FastAPI finds a route's path
    parameters in its endpoint's signature, and a lean endpoint takes only the request."""

    def __init__(self, endpoint: Endpoint, path_parameters: Iterable[str]) -> None:
        # FastAPI describes an operation with its endpoint's docstring.
        self.__doc__ = endpoint.__doc__
        self.__signature__ = inspect.Signature([
            inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=str)
            for name in path_parameters])

    def __call__(self, **_path_parameters: str) -> None:
        raise AssertionError("a documentation-only route was called")


def allowed_methods(routes: Iterable[BaseRoute], scope: Scope) -> list[str]:
    """The methods some route serves at the request's path (for a 405's Allow header)."""
    allowed: set[str] = set()
    for route in routes:
        if isinstance(route, Route) and route.methods:
            match, _child = route.matches(scope)
            if match is not Match.NONE:
                allowed |= route.methods
    return sorted(allowed)


def document(app: FastAPI) -> None:
    """Have app.openapi() list the app's LeanRoutes too, exactly where and as FastAPI would."""
    generate = app.openapi
    extended: list[dict[str, Any]] = []

    def openapi() -> dict[str, Any]:
        schema = generate()
        # FastAPI caches its schema and rebuilds it when routes are added; extend each one once.
        if not extended or extended[0] is not schema:
            _add_lean_routes(app, schema)
            extended[:] = [schema]
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _add_lean_routes(app: FastAPI, schema: dict[str, Any]) -> None:
    # Generating over all routes, the lean ones standing in as FastAPI routes, keeps the paths in
    # routing order; everything besides paths and components stays as FastAPI built it.
    routes = [route.documentation() if isinstance(route, LeanRoute) and route.include_in_schema
              else route for route in app.routes]
    full = get_openapi(title=app.title, version=app.version, openapi_version=app.openapi_version,
                       routes=routes,
                       separate_input_output_schemas=app.separate_input_output_schemas)
    schema["paths"] = full.get("paths", {})
    for section, entries in full.get("components", {}).items():
        schema.setdefault("components", {}).setdefault(section, {}).update(entries)
    # Merged here rather than by FastAPI, which drops every null from the document, the nulls
    # of the examples too (a status's "err": null, an error's "source": null).
    for route in app.routes:
        if isinstance(route, LeanRoute) and route.include_in_schema and route.operation.openapi_extra:
            operation = schema["paths"][route.path][route.operation.method.lower()]
            deep_dict_update(operation, copy.deepcopy(route.operation.openapi_extra))
    openapi.finish(schema)
