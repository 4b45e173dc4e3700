"""Validate response bodies against Messente's official OpenAPI files in ../shared/spec.

OpenAPI 3.0's `nullable` becomes a JSON-Schema null type. Three schemas whose descriptions say the
value "is *null*" while a message is processed (Status, ErrorCodeOmnichannelMachine, PriceInfo) are
treated as nullable too: the spec documents null in prose, and the official SDK accepts it.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

SPEC_DIR = Path(__file__).resolve().parents[2] / "shared" / "spec"
NULL_IN_PROSE = {"Status", "ErrorCodeOmnichannelMachine", "PriceInfo"}


def _nullable(node: Any) -> Any:
    if isinstance(node, dict):
        converted = {k: _nullable(v) for k, v in node.items() if k not in {"example"}}
        if converted.pop("nullable", False):
            if "type" in converted:
                converted["type"] = [converted["type"], "null"]
            if "enum" in converted:
                converted["enum"] = [*converted["enum"], None]
            if "$ref" in converted:
                return {"anyOf": [{"$ref": converted.pop("$ref")}, {"type": "null"}]}
        return converted
    if isinstance(node, list):
        return [_nullable(v) for v in node]
    return node


@functools.cache
def _registry(version: str) -> Registry:
    path = SPEC_DIR / f"messente-openapi-{version}.yaml"
    if not path.is_file():
        pytest.skip(f"Messente's OpenAPI file {path} is absent (../shared is not beside the repo)")
    document = _nullable(yaml.safe_load(path.read_text()))
    for name in NULL_IN_PROSE:
        schema = document["components"]["schemas"][name]
        document["components"]["schemas"][name] = {"anyOf": [schema, {"type": "null"}]}
    return Registry().with_resource("spec", Resource.from_contents(document,
                                                                   default_specification=DRAFT7))


def assert_matches(body: Any, schema_name: str, version: str = "2.1.0") -> None:
    registry = _registry(version)
    validator = jsonschema.Draft7Validator(
        {"$ref": f"spec#/components/schemas/{schema_name}"}, registry=registry)
    errors = sorted(validator.iter_errors(body), key=lambda e: list(e.path))
    assert not errors, f"{schema_name} ({version}): " + "; ".join(
        f"{list(e.path)}: {e.message}" for e in errors[:5])
