"""Find the files an ONNX model refers to outside itself (external tensor data), without the ``onnx`` package.

onnxruntime opens a tensor's external data at the ``location`` the file names, relative to the model's
directory (older releases followed ``../`` and absolute paths). The bundle loader uses
:func:`external_locations` to confine every such file to the bundle and check it against the manifest
before onnxruntime sees the model. This is a minimal protobuf wire-format reader over the messages
that can hold tensors (ModelProto -> GraphProto -> initializers, node attributes, subgraphs, functions,
training info); it walks with an explicit stack, so a hostile file cannot exhaust the Python stack.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import BundleError

# message kinds (_TOP: the model's main graph, whose inputs/outputs are also read)
_MODEL, _GRAPH, _NODE, _ATTR, _TENSOR, _SPARSE, _FUNCTION, _TRAINING, _ENTRY, _TOP = range(10)
# (message kind, field number) -> message kind of that (length-delimited) field
_CHILDREN = {
    (_MODEL, 7): _TOP, (_MODEL, 20): _TRAINING, (_MODEL, 25): _FUNCTION,
    (_GRAPH, 1): _NODE, (_GRAPH, 5): _TENSOR, (_GRAPH, 15): _SPARSE,
    (_TOP, 1): _NODE, (_TOP, 5): _TENSOR, (_TOP, 15): _SPARSE,
    (_NODE, 5): _ATTR,
    (_ATTR, 5): _TENSOR, (_ATTR, 6): _GRAPH, (_ATTR, 10): _TENSOR, (_ATTR, 11): _GRAPH,
    (_ATTR, 22): _SPARSE, (_ATTR, 23): _SPARSE,
    (_SPARSE, 1): _TENSOR, (_SPARSE, 2): _TENSOR,
    (_FUNCTION, 7): _NODE,
    (_TRAINING, 1): _GRAPH, (_TRAINING, 2): _GRAPH,
    (_TENSOR, 13): _ENTRY,
}
_TENSOR_NAME, _TENSOR_LOCATION = 8, 14
_EXTERNAL = 1  # TensorProto.DataLocation.EXTERNAL
MAX_MESSAGES = 5_000_000  # messages visited in one file: bounds the work on a hostile file


#: TensorProto.DataType -> numpy dtype name, for the types a bundle input can have
ELEM_TYPES = {1: "float32", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64", 9: "bool",
              10: "float16", 11: "float64", 12: "uint32", 13: "uint64", 16: "bfloat16"}


@dataclass
class ModelInfo:
    """What the loader needs from an ONNX file: its external tensors and the element types of the main
    graph's inputs and outputs (name -> TensorProto.DataType, 0 when not a tensor or not given)."""

    external: list[ExternalRef]
    inputs: dict[str, int]
    outputs: dict[str, int]


@dataclass(frozen=True)
class ExternalRef:
    """One tensor whose data lives in another file."""

    tensor: str
    location: str | None  # None: marked EXTERNAL without a location


class _Bad(Exception):
    pass


def _varint(buf: memoryview, i: int, end: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        if i >= end or shift > 63:
            raise _Bad("truncated or overlong varint")
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, i
        shift += 7


def _fields(buf: memoryview, start: int, end: int):
    """(field number, wire type, value or (start, end) of a length-delimited field)."""
    i = start
    while i < end:
        key, i = _varint(buf, i, end)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = _varint(buf, i, end)
            yield num, wt, v
        elif wt == 1:
            i += 8
        elif wt == 5:
            i += 4
        elif wt == 3:  # a (deprecated) group: skip to its end tag
            depth = 1
            while depth:
                key, i = _varint(buf, i, end)
                if key & 7 == 3:
                    depth += 1
                elif key & 7 == 4:
                    depth -= 1
                elif key & 7 == 0:
                    _, i = _varint(buf, i, end)
                elif key & 7 in (1, 5):
                    i += 8 if key & 7 == 1 else 4
                elif key & 7 == 2:
                    n, i = _varint(buf, i, end)
                    i += n
                else:
                    raise _Bad(f"unsupported wire type {key & 7}")
                if i > end:
                    raise _Bad("truncated group")
        elif wt == 2:
            n, i = _varint(buf, i, end)
            if i + n > end:
                raise _Bad("a field runs past the end of its message")
            yield num, wt, (i, i + n)
            i += n
        else:
            raise _Bad(f"unsupported wire type {wt}")
        if i > end:
            raise _Bad("truncated field")


def external_locations(data: bytes | memoryview, what: str = "model") -> list[ExternalRef]:
    """Every tensor of the serialized ModelProto ``data`` that keeps its data in an external file.

    Raises BundleError when the bytes are not a well-formed protobuf message."""
    return scan_model(data, what).external


def scan_model(data: bytes | memoryview, what: str = "model") -> ModelInfo:
    """External tensors and main-graph I/O types of the serialized ModelProto ``data``.

    Raises BundleError when the bytes are not a well-formed protobuf message."""
    buf = memoryview(data)
    out: list[ExternalRef] = []
    io: tuple[dict[str, int], dict[str, int]] = ({}, {})
    todo: list[tuple[int, int, int]] = [(_MODEL, 0, len(buf))]
    seen = 0
    try:
        while todo:
            kind, start, end = todo.pop()
            seen += 1
            if seen > MAX_MESSAGES:
                raise _Bad(f"more than {MAX_MESSAGES} messages")
            if kind == _TENSOR:
                ref = _tensor(buf, start, end)
                if ref is not None:
                    out.append(ref)
            else:
                _message(buf, kind, start, end, todo, io)
    except _Bad as e:
        err = str(e)
    else:
        err = None
    buf.release()  # before raising: a live view would keep a caller's mmap from closing
    if err is not None:
        raise BundleError(f"{what} is not a valid ONNX file ({err})", "re-export the bundle")
    return ModelInfo(out, *io)


def _tensor(buf: memoryview, start: int, end: int) -> ExternalRef | None:
    """TensorProto: its external-data reference, None when its data is inside the model."""
    name, location, external = "", None, False
    for num, wt, v in _fields(buf, start, end):
        if num == _TENSOR_LOCATION and wt == 0:
            external = v == _EXTERNAL
        elif num == _TENSOR_NAME and wt == 2:
            name = bytes(buf[v[0]:v[1]]).decode("utf-8", "replace")
        elif num == 13 and wt == 2:
            k, val = _entry(buf, *v)
            if k == "location":
                location = val
    return ExternalRef(name, location) if external or location is not None else None


def _message(buf: memoryview, kind: int, start: int, end: int, todo: list[tuple[int, int, int]],
             io: tuple[dict[str, int], dict[str, int]]) -> None:
    """Any other message: queue the children that can hold tensors; record the main graph's I/O types."""
    for num, wt, v in _fields(buf, start, end):
        child = _CHILDREN.get((kind, num))
        if child is not None and wt == 2:
            todo.append((child, v[0], v[1]))
        elif kind == _TOP and num in (11, 12) and wt == 2:  # GraphProto.input / .output
            name, elem = _value_info(buf, *v)
            io[num - 11][name] = elem


def _value_info(buf: memoryview, start: int, end: int) -> tuple[str, int]:
    """ValueInfoProto: (name, elem_type of its tensor type or 0)."""
    name, elem = "", 0
    for num, wt, v in _fields(buf, start, end):
        if num == 1 and wt == 2:
            name = bytes(buf[v[0]:v[1]]).decode("utf-8", "replace")
        elif num == 2 and wt == 2:  # TypeProto
            for n2, w2, v2 in _fields(buf, *v):
                if n2 == 1 and w2 == 2:  # TypeProto.tensor_type
                    for n3, w3, v3 in _fields(buf, *v2):
                        if n3 == 1 and w3 == 0:
                            elem = v3
    return name, elem


def _entry(buf: memoryview, start: int, end: int) -> tuple[str, str]:
    """StringStringEntryProto: (key, value)."""
    key = value = ""
    for num, wt, v in _fields(buf, start, end):
        if wt == 2 and num in (1, 2):
            s = bytes(buf[v[0]:v[1]]).decode("utf-8", "replace")
            if num == 1:
                key = s
            else:
                value = s
    return key, value
