"""Validate custom resources the way the API server does: against the served version's
`openAPIV3Schema` of the unmodified upstream CRD (tests/upstream_crds/, copied from ../shared/crds).

What the API server applies to a structural schema, and so what this checks:
- null values of fields that are not nullable are pruned first (as the API server does);
- unknown fields are rejected (strict field validation), except under
  `x-kubernetes-preserve-unknown-fields: true` or `additionalProperties`;
- `required`, `type` (integer is not number, a bool is neither), `nullable`, `enum`, `pattern`
  (RE2; the patterns in these CRDs are also valid Python regexes), `format` int32/int64 ranges,
  min/max, lengths, item and property counts;
- `x-kubernetes-int-or-string`, `x-kubernetes-embedded-resource` (apiVersion and kind required);
- `x-kubernetes-list-type: set` (unique items) and `map` with `x-kubernetes-list-map-keys`
  (each key present, or defaulted, and the key tuple unique);
- value validation `anyOf` / `allOf` / `oneOf` / `not`;
- metadata as ObjectMeta: name a DNS-1123 subdomain, label keys and values, annotation size;
- apiVersion must be a served version of the CRD's group, and kind the CRD's kind;
- `default` values are applied first (the API server defaults a request when it decodes it), and
  the formats the API server checks (date-time, ipv4, ipv6; int32/int64 ranges);
- the CEL rules (`x-kubernetes-validations`) with a real CEL engine (tests/standins/kubernetes/crd_cel.py), transition
  rules (`oldSelf`) on an update given the old object.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from functools import cache
from typing import Any

import yaml

from tests.standins.kubernetes.crd_cel import CelReport, apply_defaults, evaluate
from tests.support.paths import UPSTREAM_CRDS

CRDS = UPSTREAM_CRDS
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
INT_RANGES = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}


class SchemaError(AssertionError):
    """A custom resource the API server would refuse; the message names the field path."""


@cache
def crds() -> dict[tuple[str, str], dict[str, Any]]:
    """(group, kind) -> CRD, for every vendored CRD file."""
    out = {}
    for path in sorted(CRDS.glob("*.yaml")):
        crd = yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        out[(crd["spec"]["group"], crd["spec"]["names"]["kind"])] = crd
    return out


def schema_for(api_version: str, kind: str) -> dict[str, Any]:
    group, _, version = api_version.rpartition("/")
    crd = crds().get((group, kind))
    if crd is None:
        raise SchemaError(f"{kind}: no upstream CRD for group {group!r} (have {sorted(crds())})")
    served = {v["name"]: v for v in crd["spec"]["versions"] if v.get("served")}
    if version not in served:
        raise SchemaError(f"{kind}: apiVersion {api_version} is not served by the CRD (served: {sorted(served)})")
    return served[version]["schema"]["openAPIV3Schema"]


def validate_resource(obj: dict[str, Any], old: dict[str, Any] | None = None,
                      report: CelReport | None = None) -> None:
    """Raise SchemaError (with the field path) where the API server would refuse `obj` (an update
    of `old` when given: transition rules apply). `report` collects every CEL rule evaluated."""
    if not isinstance(obj, dict) or "apiVersion" not in obj or "kind" not in obj:
        raise SchemaError("a resource needs apiVersion and kind")
    schema = schema_for(obj["apiVersion"], obj["kind"])
    _metadata(obj.get("metadata"), obj["kind"])
    errors: list[str] = []
    obj = apply_defaults(obj, schema)
    # ObjectMeta is the API server's own type; the CRD declares only `metadata: {type: object}`.
    body = {k: v for k, v in obj.items() if k != "metadata"}
    root = {**schema, "properties": {k: v for k, v in schema.get("properties", {}).items() if k != "metadata"},
            "required": [k for k in schema.get("required", []) if k != "metadata"]}  # checked by _metadata
    _check(body, root, obj["kind"], errors)
    if not errors:  # as the API server: CEL runs on an object that passed the structural schema
        before = apply_defaults(old, schema) if old is not None else None
        errors += evaluate(_pruned(obj, schema), schema, obj["kind"], _pruned(before, schema), report)
    if errors:
        raise SchemaError(f"{obj['kind']} {obj.get('metadata', {}).get('name', '?')}: " + "; ".join(errors[:10]))


def _pruned(value: Any, schema: dict[str, Any]) -> Any:
    """Null values of fields that are not nullable dropped (the API server prunes them)."""
    if isinstance(value, dict):
        props, extra = schema.get("properties") or {}, schema.get("additionalProperties")
        out = {}
        for key, item in value.items():
            sub = props.get(key) or (extra if isinstance(extra, dict) else {})
            if item is None and not sub.get("nullable"):
                continue
            out[key] = _pruned(item, sub)
        return out
    if isinstance(value, list):
        return [_pruned(item, schema.get("items") or {}) for item in value]
    return value


def _metadata(meta: Any, where: str) -> None:
    if not isinstance(meta, dict):
        raise SchemaError(f"{where}.metadata: expected an object")
    name = meta.get("name")
    if not name and not meta.get("generateName"):
        raise SchemaError(f"{where}.metadata.name: required")
    if name and (len(name) > 253 or not DNS1123_SUBDOMAIN.match(name)):
        raise SchemaError(f"{where}.metadata.name: {name!r} is not a DNS-1123 subdomain")
    for key, value in (meta.get("labels") or {}).items():
        prefix, _, short = key.rpartition("/")
        if (prefix and not DNS1123_SUBDOMAIN.match(prefix)) or len(short) > 63 or not LABEL_NAME.match(short):
            raise SchemaError(f"{where}.metadata.labels: key {key!r} is not a valid label name")
        if not isinstance(value, str) or len(value) > 63 or (value and not LABEL_NAME.match(value)):
            raise SchemaError(f"{where}.metadata.labels[{key}]: {value!r} is not a valid label value")
    annotations = meta.get("annotations") or {}
    if any(not isinstance(v, str) for v in annotations.values()):
        raise SchemaError(f"{where}.metadata.annotations: values must be strings")
    if sum(len(k) + len(v) for k, v in annotations.items()) > 256 * 1024:
        raise SchemaError(f"{where}.metadata.annotations: more than 256 KiB in all")


def _type_ok(value: Any, schema: dict[str, Any]) -> bool:
    if schema.get("x-kubernetes-int-or-string"):
        return (isinstance(value, int) and not isinstance(value, bool)) or isinstance(value, str)
    kind = schema.get("type")
    if kind is None:
        return True
    return {
        "object": lambda v: isinstance(v, dict),
        "array": lambda v: isinstance(v, list),
        "string": lambda v: isinstance(v, str),
        "boolean": lambda v: isinstance(v, bool),
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    }[kind](value)


def _check(value: Any, schema: dict[str, Any], path: str, errors: list[str]) -> None:
    if value is None:
        if not schema.get("nullable"):
            errors.append(f"{path}: null is not allowed (the field is not nullable)")
        return
    if not _type_ok(value, schema):
        errors.append(f"{path}: expected {schema.get('type', 'int-or-string')}, got {type(value).__name__} "
                      f"{_short(value)}")
        return
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{path}: {_short(value)} is not one of {schema['enum']}")
    if isinstance(value, str):
        _string(value, schema, path, errors)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        _number(value, schema, path, errors)
    for keyword in ("anyOf", "oneOf"):
        if keyword in schema:
            passing = sum(1 for sub in schema[keyword] if not _errors_of(value, sub, path))
            if passing == 0 or (keyword == "oneOf" and passing > 1):
                errors.append(f"{path}: does not satisfy {keyword} of the schema")
    for sub in schema.get("allOf", []):
        _check(value, sub, path, errors)
    if "not" in schema and not _errors_of(value, schema["not"], path):
        errors.append(f"{path}: matches a schema it must not match")
    if isinstance(value, dict):
        _object(value, schema, path, errors)
    elif isinstance(value, list):
        _array(value, schema, path, errors)


def _errors_of(value: Any, schema: dict[str, Any], path: str) -> list[str]:
    # anyOf/oneOf branches in structural schemas carry value constraints only (no properties)
    found: list[str] = []
    _check(value, {**schema, "x-kubernetes-preserve-unknown-fields": True}, path, found)
    return found


def _string(value: str, schema: dict[str, Any], path: str, errors: list[str]) -> None:
    if "pattern" in schema and not re.search(schema["pattern"], value):
        errors.append(f"{path}: {value!r} does not match {schema['pattern']!r}")
    _count_bounds(len(value), schema, "Length", "characters", path, errors)
    check = FORMATS.get(schema.get("format", ""))
    if check is not None and not schema.get("x-kubernetes-int-or-string") and not check(value):
        errors.append(f"{path}: {value!r} is not a valid {schema['format']}")


def _parses(parse, value: str) -> bool:
    try:
        parse(value)
    except ValueError:
        return False
    return True


# The string formats these CRDs declare, as kube-openapi's strfmt checks them.
FORMATS = {
    "date-time": lambda v: _parses(lambda x: dt.datetime.fromisoformat(x.replace("Z", "+00:00")), v),
    "ipv4": lambda v: _parses(ipaddress.IPv4Address, v),
    "ipv6": lambda v: _parses(ipaddress.IPv6Address, v),
}


def _count_bounds(count: int, schema: dict[str, Any], suffix: str, what: str, path: str, errors: list[str]) -> None:
    """minLength/maxLength, minProperties/maxProperties, minItems/maxItems."""
    low, high = schema.get(f"min{suffix}"), schema.get(f"max{suffix}")
    if low is not None and count < low:
        errors.append(f"{path}: fewer than {low} {what}")
    if high is not None and count > high:
        errors.append(f"{path}: more than {high} {what}")


def _number(value: float, schema: dict[str, Any], path: str, errors: list[str]) -> None:
    low, high = INT_RANGES.get(schema.get("format", ""), (None, None))
    if low is not None and not low <= value <= high:
        errors.append(f"{path}: {value} is outside {schema['format']}")
    if "minimum" in schema and (value < schema["minimum"] or
                                (schema.get("exclusiveMinimum") and value == schema["minimum"])):
        errors.append(f"{path}: {value} is below the minimum {schema['minimum']}")
    if "maximum" in schema and (value > schema["maximum"] or
                                (schema.get("exclusiveMaximum") and value == schema["maximum"])):
        errors.append(f"{path}: {value} is above the maximum {schema['maximum']}")


def _object(value: dict, schema: dict[str, Any], path: str, errors: list[str]) -> None:
    props = schema.get("properties", {})
    extra = schema.get("additionalProperties")
    # The API server prunes null values of fields that are not nullable before it validates.
    value = {k: v for k, v in value.items()
             if v is not None or (props.get(k) or (extra if isinstance(extra, dict) else {})).get("nullable")}
    for name in schema.get("required", []):
        if name not in value:
            errors.append(f"{path}.{name}: required")
    if schema.get("x-kubernetes-embedded-resource"):
        for name in ("apiVersion", "kind"):
            if name not in value:
                errors.append(f"{path}.{name}: required in an embedded resource")
    for key, item in value.items():
        where = f"{path}.{key}"
        if key in props:
            _check(item, props[key], where, errors)
        elif isinstance(extra, dict):
            _check(item, extra, where, errors)
        elif not (extra is True or schema.get("x-kubernetes-preserve-unknown-fields")
                  or (schema.get("x-kubernetes-embedded-resource") and key in ("apiVersion", "kind", "metadata"))):
            errors.append(f"{where}: unknown field")
    _count_bounds(len(value), schema, "Properties", "properties", path, errors)


def _array(value: list, schema: dict[str, Any], path: str, errors: list[str]) -> None:
    _count_bounds(len(value), schema, "Items", "items", path, errors)
    items = schema.get("items", {})
    for i, item in enumerate(value):
        _check(item, items, f"{path}[{i}]", errors)
    list_type = schema.get("x-kubernetes-list-type")
    if list_type == "set" or schema.get("uniqueItems"):
        seen = [repr(v) for v in value]
        if len(set(seen)) != len(seen):
            errors.append(f"{path}: duplicate items in a set")
    elif list_type == "map":
        keys = schema.get("x-kubernetes-list-map-keys", [])
        key_schemas = items.get("properties", {})
        tuples = []
        for i, item in enumerate(value):
            if not isinstance(item, dict):
                continue
            row = []
            for key in keys:
                if key in item:
                    row.append(item[key])
                elif "default" in key_schemas.get(key, {}):
                    row.append(key_schemas[key]["default"])
                else:
                    errors.append(f"{path}[{i}].{key}: required (a list-map key)")
            tuples.append(repr(row))
        if len(set(tuples)) != len(tuples):
            errors.append(f"{path}: duplicate entries for the list-map keys {keys}")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
