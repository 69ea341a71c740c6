"""The Open Inference Protocol's request side, parsed defensively (pure: no kserve import).

KServe's own parser trusts the client: a non-numeric `Inference-Header-Content-Length`, a
`binary_data_size` that disagrees with the body, an element length past the end, a tensor whose
byte count is not a multiple of its element size or non-UTF-8 text all end as 500s there. Here
every one of them is an InputError naming the input and what was expected (400), and a body
without that header is all JSON, as the binary extension says and Triton does.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from components.common.errors import InputError

HEADER = "inference-header-content-length"
# Little-endian element types of the binary extension; BF16 is read as the upper half of an FP32.
NUMPY_TYPES = {"BOOL": "?", "UINT8": "u1", "INT8": "i1", "UINT16": "<u2", "INT16": "<i2", "FP16": "<f2",
               "BF16": "<u2", "UINT32": "<u4", "INT32": "<i4", "FP32": "<f4", "UINT64": "<u8", "INT64": "<i8",
               "FP64": "<f8"}
DATATYPES = {*NUMPY_TYPES, "BYTES"}

# The JSON request bodies as JSON Schema, for the predictor's OpenAPI document (clients and
# fuzzers read it; the routes parse raw bodies, so nothing here is enforced twice).
_PARAMETERS = {"type": "object", "description": "OIP parameters; binary_data_size marks a tensor sent after the "
               "JSON header (binary extension, Content-Type application/octet-stream)"}
INFER_REQUEST_SCHEMA = {
    "type": "object", "required": ["inputs"],
    "properties": {
        "id": {"type": "string"},
        "parameters": _PARAMETERS,
        "inputs": {"type": "array", "items": {
            "type": "object", "required": ["name", "shape", "datatype"],
            "properties": {"name": {"type": "string"}, "shape": {"type": "array", "items": {"type": "integer"}},
                           "datatype": {"type": "string", "enum": sorted(DATATYPES)}, "parameters": _PARAMETERS,
                           "data": {"type": "array", "description": "row-major, flat or nested"}}}},
        "outputs": {"type": "array", "items": {"type": "object", "required": ["name"], "properties": {
            "name": {"type": "string"}, "parameters": _PARAMETERS}}},
    },
}
V1_REQUEST_SCHEMA = {
    "type": "object", "required": ["instances"],
    "properties": {"instances": {"type": "array", "items": {"anyOf": [
        {"type": "string"}, {"type": "object", "required": ["text"], "properties": {"text": {"type": "string"}}}]}}},
}
ERROR_SCHEMA = {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}}


@dataclass
class Tensor:
    name: str
    datatype: str
    shape: list[int]
    data: list[Any]


@dataclass
class Request:
    id: str | None
    inputs: list[Tensor]
    outputs: list[str] | None  # requested output names; None: all


def _json_header_length(headers: dict[str, str], body_len: int) -> int:
    raw = headers.get(HEADER)
    if raw is None:
        return body_len  # no binary part: the whole body is the JSON header
    if not raw.strip().isdigit():
        raise InputError(f"header Inference-Header-Content-Length: expected a byte count, got {raw[:40]!r}")
    length = int(raw)
    if length > body_len:
        raise InputError(f"header Inference-Header-Content-Length: {length} exceeds the body's {body_len} bytes")
    return length


def _bytes_elements(raw: bytes, name: str) -> list[str]:
    out, pos = [], 0
    while pos < len(raw):
        if pos + 4 > len(raw):
            raise InputError(f"input {name!r}: a BYTES element's 4-byte length prefix is cut off at byte {pos}")
        (size,) = struct.unpack_from("<I", raw, pos)
        pos += 4
        if pos + size > len(raw):
            raise InputError(f"input {name!r}: element {len(out)} claims {size} bytes, only {len(raw) - pos} remain")
        out.append(_utf8(raw[pos:pos + size], name, len(out)))
        pos += size
    return out


def _utf8(raw: bytes, name: str, index: int) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"input {name!r}: element {index} is not valid UTF-8 (byte {exc.start})") from None


def _binary_elements(raw: bytes, datatype: str, name: str) -> list[Any]:
    if datatype == "BYTES":
        return _bytes_elements(raw, name)
    dtype = np.dtype(NUMPY_TYPES[datatype])
    if len(raw) % dtype.itemsize:
        raise InputError(f"input {name!r}: {len(raw)} bytes is not a whole number of {datatype} elements "
                         f"({dtype.itemsize} bytes each)")
    values = np.frombuffer(raw, dtype)
    if datatype == "BF16":
        values = (values.astype("<u4") << 16).view("<f4")
    return values.tolist()


def _shape(value: Any, name: str) -> list[int]:
    if not isinstance(value, list) or not all(isinstance(d, int) and not isinstance(d, bool) for d in value):
        raise InputError(f"input {name!r}: shape must be a list of integers, got {json.dumps(value)[:80]}")
    if any(d < 0 for d in value):
        raise InputError(f"input {name!r}: shape {value} has a negative dimension (requests have fixed shapes)")
    return value


def _flatten(data: Any) -> list[Any]:
    if not isinstance(data, list):
        return [data]
    return [x for item in data for x in _flatten(item)]


def parse_request(body: bytes, headers: dict[str, str]) -> Request:
    """A v2 infer body (JSON, or JSON + binary tensors) as a Request; InputError when malformed."""
    headers = {k.lower(): v for k, v in headers.items()}
    json_len = _json_header_length(headers, len(body))
    try:
        doc = json.loads(body[:json_len])
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"request body: not valid JSON ({str(exc)[:120]})") from None
    if not isinstance(doc, dict):
        raise InputError(f"request body: expected a JSON object, got {type(doc).__name__}")
    inputs_doc = doc.get("inputs")
    if not isinstance(inputs_doc, list) or not inputs_doc:
        raise InputError('request body: "inputs" must be a non-empty list of tensors')
    pos, inputs = json_len, []
    for i, t in enumerate(inputs_doc):
        if not isinstance(t, dict):
            raise InputError(f"inputs[{i}]: expected a tensor object, got {type(t).__name__}")
        name = t.get("name")
        if not isinstance(name, str) or not name:
            raise InputError(f"inputs[{i}]: \"name\" must be a non-empty string")
        datatype = t.get("datatype")
        if datatype not in DATATYPES:
            raise InputError(f"input {name!r}: unknown datatype {str(datatype)[:20]!r} "
                             f"(expected one of {', '.join(sorted(DATATYPES))})")
        shape = _shape(t.get("shape"), name)
        params = t.get("parameters") or {}
        if not isinstance(params, dict):
            raise InputError(f"input {name!r}: \"parameters\" must be an object")
        if "data" in t:
            data = _flatten(t["data"])
        elif "binary_data_size" in params:
            size = params["binary_data_size"]
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise InputError(f"input {name!r}: binary_data_size must be a byte count, got {size!r}")
            if pos + size > len(body):
                raise InputError(f"input {name!r}: binary_data_size {size} runs past the end of the body "
                                 f"({len(body) - pos} bytes left)")
            data, pos = _binary_elements(body[pos:pos + size], datatype, name), pos + size
        else:
            raise InputError(f"input {name!r}: neither \"data\" nor parameters.binary_data_size given")
        if math.prod(shape) != len(data):
            raise InputError(f"input {name!r}: shape {shape} holds {math.prod(shape)} elements, data has {len(data)}")
        inputs.append(Tensor(name, datatype, shape, data))
    if pos != len(body):
        raise InputError(f"request body: {len(body) - pos} bytes after the last binary tensor "
                         "(binary_data_size smaller than the data?)")
    outputs = doc.get("outputs")
    if outputs is not None:
        if not isinstance(outputs, list) or not all(isinstance(o, dict) and isinstance(o.get("name"), str)
                                                    for o in outputs):
            raise InputError('request body: "outputs" must be a list of {"name": string}')
        outputs = [o["name"] for o in outputs]
    request_id = doc.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InputError(f'request body: "id" must be a string, got {type(request_id).__name__}')
    return Request(request_id, inputs, outputs)
