"""The `x-kubernetes-validations` rules of a CRD schema, evaluated as the API server evaluates them,
with a real CEL engine from PyPI (`common-expression-language`, `import cel`); nothing here parses
or interprets CEL itself.

What the API server does around the engine, and so what this does
(k8s.io/apiextensions-apiserver/pkg/apiserver/schema/cel, k8s.io/apiserver/pkg/cel):
- rules run on the defaulted object (defaults are applied when a request is decoded);
- `self` is the value at the rule's node; object properties are only those the schema declares
  (unknown fields kept by x-kubernetes-preserve-unknown-fields are not accessible), with property
  names escaped: `__` -> `__underscores__`, `.` -> `__dot__`, `-` -> `__dash__`, `/` -> `__slash__`,
  and a CEL reserved word `w` -> `__w__` (so `namespace` is `__namespace__`); map keys
  (additionalProperties) are not escaped; at the root only apiVersion, kind, metadata.name and
  metadata.generateName are visible;
- `number` fields are doubles; `integer` fields ints;
- a rule that uses `oldSelf` is a transition rule: it runs only on an update, where the old object
  has a value at the same place (objects and maps by key, `x-kubernetes-list-type: map` lists by
  their keys; items of other lists have no old value);
- a rule that is false is an error `PATH: Invalid value: "TYPE": MESSAGE` (the rule's message, else
  `failed rule: RULE`), at `fieldPath` when the rule names one;
- a rule that cannot be evaluated (an error at run time, or a function the engine does not
  provide) refuses the object too.
Kubernetes adds CEL libraries of its own. The ones these CRDs call that the engine lacks are
registered below (`split` from cel-go's strings extension); every other Kubernetes library
function is listed in KUBERNETES_LIBRARY, so that `coverage()` can name each rule in the vendored
CRDs that calls one this engine cannot evaluate.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import cel

RESERVED = {"true", "false", "null", "in", "as", "break", "const", "continue", "else", "for", "function", "if",
            "import", "let", "loop", "package", "namespace", "return"}
ACCESSIBLE = re.compile(r"^[a-zA-Z_.\-/][a-zA-Z0-9_.\-/]*$")


def _split(text: str, separator: str, limit: int | None = None) -> list[str]:
    """cel-go ext.Strings `split`: limit 0 gives [], a negative limit (or none) splits fully, and an
    empty separator splits into characters."""
    if limit == 0:
        return []
    if separator == "":
        chars = list(text)
        return chars if limit is None or limit < 0 or limit >= len(chars) else \
            [*chars[:limit - 1], "".join(chars[limit - 1:])]
    return text.split(separator) if limit is None or limit < 0 else text.split(separator, limit - 1)


# Kubernetes' own CEL functions, registered where this engine lacks them (exact semantics above).
REGISTERED = {"split": _split}
# The rest of what Kubernetes adds to CEL (k8s.io/apiserver/pkg/cel/library and the cel-go
# extensions it enables): not registered here, so a rule calling one is reported, never guessed.
KUBERNETES_LIBRARY = {
    "lowerAscii", "upperAscii", "replace", "trim", "join", "substring", "charAt", "indexOf", "lastIndexOf",
    "reverse", "quote", "format", "isSorted", "sum", "min", "max", "find", "findAll", "url", "isURL", "getScheme",
    "getHost", "getHostname", "getPort", "getEscapedPath", "getQuery", "quantity", "isQuantity", "ip", "isIP",
    "cidr", "isCIDR", "semver", "isSemver", "authorizer", "sets.contains", "sets.equivalent", "sets.intersects",
    "base64.encode", "base64.decode", "strings.quote", "optional.of", "optional.none", "optional.ofNonZeroValue"}


# The CEL standard definitions (cel-spec, langdef.md "Standard Definitions") that this engine
# implements; operators appear as `_op_`, `!_`, `-_` or `@name`.
CEL_STANDARD = {"size", "matches", "startsWith", "endsWith", "contains", "duration", "timestamp", "int", "uint",
                "double", "string", "bytes", "bool", "type", "dyn"}


def unsupported(functions: list[str]) -> list[str]:
    """The functions of a rule that neither the engine's standard library nor REGISTERED provides."""
    return sorted(f for f in functions if not (f in CEL_STANDARD or f in REGISTERED or f[0] in "_@!-"))


def escape(name: str) -> str | None:
    """A property name as CEL sees it (None: not accessible)."""
    if not ACCESSIBLE.match(name):
        return None
    if name in RESERVED:
        return f"__{name}__"
    return (name.replace("__", "__underscores__").replace(".", "__dot__").replace("-", "__dash__")
            .replace("/", "__slash__"))


def apply_defaults(value: Any, schema: dict[str, Any]) -> Any:
    """The object with every absent property that has a `default` filled in, recursively."""
    if isinstance(value, dict):
        out = dict(value)
        props = schema.get("properties") or {}
        for key, sub in props.items():
            if key not in out and "default" in sub:
                out[key] = copy.deepcopy(sub["default"])
        extra = schema.get("additionalProperties")
        for key, item in out.items():
            if key in props:
                out[key] = apply_defaults(item, props[key])
            elif isinstance(extra, dict):
                out[key] = apply_defaults(item, extra)
        return out
    if isinstance(value, list):
        return [apply_defaults(item, schema.get("items") or {}) for item in value]
    return value


def cel_value(value: Any, schema: dict[str, Any], root: bool = False) -> Any:
    """`value` as the rule sees it: declared properties only, names escaped, numbers typed."""
    if value is None:
        return None
    if isinstance(value, dict):
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        if props is not None and not isinstance(extra, dict):
            out = {}
            for key, item in value.items():
                name = escape(key)
                if key in props and name is not None:
                    out[name] = cel_value(item, props[key])
            if root or schema.get("x-kubernetes-embedded-resource"):
                for key in ("apiVersion", "kind"):
                    if key in value:
                        out[key] = value[key]
                meta = value.get("metadata") or {}
                out["metadata"] = {k: meta[k] for k in ("name", "generateName") if k in meta}
            return out
        if isinstance(extra, dict):
            return {key: cel_value(item, extra) for key, item in value.items()}
        return {}  # preserve-unknown-fields with no structure: nothing is accessible
    if isinstance(value, list):
        return [cel_value(item, schema.get("items") or {}) for item in value]
    if schema.get("type") == "number" and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


@dataclass
class RuleResult:
    crd: str
    path: str       # where the rule sits in the object (spec.rules[0].backendRefs[1])
    rule: str
    message: str
    status: str     # passed | failed | error | not_applicable (a transition rule on create)
    detail: str = ""


@dataclass
class CelReport:
    results: list[RuleResult] = field(default_factory=list)

    def by_status(self, status: str) -> list[RuleResult]:
        return [r for r in self.results if r.status == status]


@cache
def _program(rule: str):
    return cel.compile(rule)


def _message(rule: dict[str, Any]) -> str:
    return rule.get("message") or f"failed rule: {rule['rule']}"


def _type_name(schema: dict[str, Any]) -> str:
    return schema.get("type") or ("string" if schema.get("x-kubernetes-int-or-string") else "object")


def evaluate(obj: dict[str, Any], schema: dict[str, Any], crd: str, old: dict[str, Any] | None = None,
             report: CelReport | None = None) -> list[str]:
    """Every rule of `schema` on the (already defaulted) `obj`: the API server's error lines."""
    errors: list[str] = []
    report = report if report is not None else CelReport()
    _walk(obj, old, schema, crd, crd, errors, report, root=True)
    return errors


def _walk(value: Any, old: Any, schema: dict[str, Any], crd: str, path: str, errors: list[str],
          report: CelReport, root: bool = False) -> None:
    if value is None:
        return
    rules = schema.get("x-kubernetes-validations") or []
    if rules:
        self_value = cel_value(value, schema, root)
        old_value = cel_value(old, schema, root) if old is not None else None
        for rule in rules:
            _run(rule, self_value, old_value, schema, crd, path, errors, report)
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            sub = props.get(key) if key in props else (extra if isinstance(extra, dict) else None)
            if sub is None or (root and key == "metadata"):
                continue
            before = old.get(key) if isinstance(old, dict) else None
            _walk(item, before, sub, crd, f"{path}.{key}" if key in props else f"{path}[{key}]", errors, report)
    elif isinstance(value, list):
        items = schema.get("items") or {}
        keys = schema.get("x-kubernetes-list-map-keys") if schema.get("x-kubernetes-list-type") == "map" else None
        olds = {}
        if keys and isinstance(old, list):
            olds = {tuple(o.get(k) for k in keys): o for o in old if isinstance(o, dict)}
        for i, item in enumerate(value):
            before = olds.get(tuple(item.get(k) for k in keys)) if keys and isinstance(item, dict) else None
            _walk(item, before, items, crd, f"{path}[{i}]", errors, report)


def _run(rule: dict[str, Any], self_value: Any, old_value: Any, schema: dict[str, Any], crd: str, path: str,
         errors: list[str], report: CelReport) -> None:
    where = f"{path}.{rule['fieldPath'].lstrip('.')}" if rule.get("fieldPath") else path
    result = RuleResult(crd, where, rule["rule"], _message(rule), "passed")
    report.results.append(result)
    try:
        program = _program(rule["rule"])
    except ValueError as exc:
        result.status, result.detail = "error", f"does not compile here: {exc}"
        errors.append(f"{where}: rule could not be evaluated ({result.detail})")
        return
    missing = unsupported(program.functions())
    if missing:
        result.status, result.detail = "error", f"calls {', '.join(missing)}, which this engine does not provide"
        errors.append(f"{where}: rule could not be evaluated ({result.detail})")
        return
    context = cel.Context()
    context.add_variable("self", self_value)
    if "oldSelf" in program.variables():
        if old_value is None:  # a transition rule runs only where an old value exists
            result.status = "not_applicable"
            return
        context.add_variable("oldSelf", old_value)
    for name, function in REGISTERED.items():
        context.add_function(name, function)
    try:
        passed = program.execute(context)
    except Exception as exc:  # the engine's run-time errors (no such key, no such overload, ...)
        result.status, result.detail = "error", f"{type(exc).__name__}: {exc}"
        errors.append(f"{where}: rule {rule['rule'][:80]!r} could not be evaluated: {result.detail}")
        return
    if passed is not True:
        result.status = "failed"
        errors.append(f'{where}: Invalid value: "{_type_name(schema)}": {_message(rule)}')


def rules_of(schema: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    """(schema path, rule) for every rule in a schema."""
    found = [(path or ".", r) for r in schema.get("x-kubernetes-validations") or []]
    for key, sub in (schema.get("properties") or {}).items():
        found += rules_of(sub, f"{path}.{key}")
    if isinstance(schema.get("additionalProperties"), dict):
        found += rules_of(schema["additionalProperties"], f"{path}[*]")
    if isinstance(schema.get("items"), dict):
        found += rules_of(schema["items"], f"{path}[]")
    return found


def coverage(schema: dict[str, Any]) -> dict[str, list[str]]:
    """Each distinct rule of a schema, by whether this engine can evaluate it: it compiles, and every
    Kubernetes library function it calls is provided. {"evaluable": [...], "not_evaluable": [...]},
    each entry "PATH: MESSAGE (why)"."""
    out: dict[str, list[str]] = {"evaluable": [], "not_evaluable": []}
    seen: set[tuple[str, str]] = set()
    for path, rule in rules_of(schema):
        if (path, rule["rule"]) in seen:
            continue
        seen.add((path, rule["rule"]))
        name = f"{path}: {_message(rule)}"
        try:
            program = _program(rule["rule"])
        except ValueError as exc:
            out["not_evaluable"].append(f"{name} (does not compile: {exc})")
            continue
        missing = unsupported(program.functions())
        if missing:
            out["not_evaluable"].append(f"{name} (calls {', '.join(missing)}"
                                        + (", a Kubernetes CEL library function" if set(missing) & KUBERNETES_LIBRARY
                                           else "") + ")")
        else:
            out["evaluable"].append(name)
    return out
