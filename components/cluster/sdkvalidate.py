"""Structural validation of a camelCase manifest against generated OpenAPI SDK models.

The Kubernetes, Katib and KServe Python SDKs are generated from OpenAPI: every model class lists
its fields (`attribute_map`: python name -> JSON key) and their types (`openapi_types`). Walking a
manifest against them finds unknown fields (typos, wrong nesting) and wrong shapes, with a path to
the offending key, without a cluster. Enum values are not checked by the SDKs and not here.
"""

from __future__ import annotations

import re
import typing
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ValidationError

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


def validate_pydantic(data: Any, model: type, path: str = "$") -> None:
    """The same walk for SDKs generated as pydantic v2 models (kubeflow-spark-api, kubeflow-trainer-
    api): every key must be a field's JSON name, nested models are walked, and then pydantic checks
    types and required fields. Their own `from_dict` silently drops unknown keys; this does not.
    A oneOf wrapper model (a Quantity: string or number) is checked by constructing it from the
    manifest's scalar, since pydantic would want the wrapper object itself there."""
    def models_in(annotation) -> list[type]:
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            return [annotation]
        return [m for arg in typing.get_args(annotation) for m in models_in(arg)]

    wrapped: set[tuple] = set()  # the locations of oneOf scalars, checked here instead of by pydantic

    def walk(value: Any, annotation, where: str, loc: tuple = ()) -> None:
        origin = typing.get_origin(annotation)
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if origin is typing.Union and len(args) == 1:
            return walk(value, args[0], where, loc)
        if origin in (list, typing.List) and isinstance(value, list):  # noqa: UP006
            for i, item in enumerate(value):
                walk(item, args[0], f"{where}[{i}]", (*loc, i))
        elif origin in (dict, typing.Dict) and isinstance(value, dict):  # noqa: UP006
            for k, item in value.items():
                walk(item, args[1], f"{where}.{k}", (*loc, k))
        elif not isinstance(value, dict) and (found := models_in(annotation)) and \
                "actual_instance" in found[0].model_fields:
            try:
                found[0](actual_instance=value)
            except (ValidationError, ValueError) as exc:
                kinds = sorted(found[0].model_fields["one_of_schemas"].default)
                raise ManifestError(f"{where}: {value!r} is none of {kinds}") from exc
            wrapped.add(loc)
        elif isinstance(value, dict) and (found := models_in(annotation)):
            klass = found[0]
            by_json = {(f.alias or name): f for name, f in klass.model_fields.items()}
            for key, item in value.items():
                if key not in by_json:
                    close = [k for k in by_json if k.lower() == key.lower()]
                    hint = f" (did you mean {close[0]!r}?)" if close else ""
                    raise ManifestError(f"{where}: unknown field {key!r} in {klass.__name__}{hint}")
                walk(item, by_json[key].annotation, f"{where}.{key}", (*loc, key))
        return None

    walk(data, model, path)
    try:
        model.model_validate(data)
    except ValidationError as exc:
        errors = [e for e in exc.errors() if not any(tuple(e["loc"][:len(w)]) == w for w in wrapped)]
        if errors:
            first = errors[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ManifestError(f"{path}.{where}: {first['msg']}") from exc
