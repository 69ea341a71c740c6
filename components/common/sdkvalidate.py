"""Structural validation of a camelCase manifest against generated OpenAPI SDK models.

The Kubernetes, Katib and KServe Python SDKs are generated from OpenAPI: every model class lists
its fields (`attribute_map`: python name -> JSON key) and their types (`openapi_types`). Walking a
manifest against them finds unknown fields (typos, wrong nesting) and wrong shapes, with a path to
the offending key, without a cluster. Enum values are not checked by the SDKs and not here.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

_LIST = re.compile(r"^list\[(.+)\]$")
_DICT = re.compile(r"^dict\((\w+), (.+)\)$")
_PRIMITIVES = {"str": str, "int": int, "float": (int, float), "bool": bool, "object": object,
               "datetime": str, "date": str}


class ManifestError(ValueError):
    pass


def model_lookup(*modules) -> Callable[[str], type | None]:
    def find(name: str):
        for module in modules:
            if hasattr(module, name):
                return getattr(module, name)
        return None

    return find


def validate(data: Any, type_name: str, lookup: Callable[[str], type | None], path: str = "$",
             object_hook: Callable[[Any, str], None] | None = None) -> None:
    """Raise ManifestError at the first mismatch. `object_hook(value, path)` checks `object` fields."""
    if data is None:
        return
    if m := _LIST.match(type_name):
        if not isinstance(data, list):
            raise ManifestError(f"{path}: expected a list, got {type(data).__name__}")
        for i, item in enumerate(data):
            validate(item, m.group(1), lookup, f"{path}[{i}]", object_hook)
        return
    if m := _DICT.match(type_name):
        if not isinstance(data, dict):
            raise ManifestError(f"{path}: expected a mapping, got {type(data).__name__}")
        for k, v in data.items():
            validate(v, m.group(2), lookup, f"{path}.{k}", object_hook)
        return
    if type_name in _PRIMITIVES:
        if type_name == "object":
            if object_hook:
                object_hook(data, path)
            return
        expected = _PRIMITIVES[type_name]
        if isinstance(data, bool) and type_name in ("int", "float"):
            raise ManifestError(f"{path}: expected {type_name}, got bool")
        if not isinstance(data, expected):
            raise ManifestError(f"{path}: expected {type_name}, got {type(data).__name__} {data!r}")
        return
    klass = lookup(type_name)
    if klass is None:
        raise ManifestError(f"{path}: no SDK model named {type_name}")
    if not isinstance(data, dict):
        raise ManifestError(f"{path}: expected an object ({type_name}), got {type(data).__name__}")
    by_json = {json_key: attr for attr, json_key in klass.attribute_map.items()}
    for key, value in data.items():
        if key not in by_json:
            close = [k for k in by_json if k.lower() == key.lower()]
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ManifestError(f"{path}: unknown field {key!r} in {type_name}{hint}")
        validate(value, klass.openapi_types[by_json[key]], lookup, f"{path}.{key}", object_hook)
