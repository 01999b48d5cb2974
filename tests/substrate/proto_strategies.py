"""Hypothesis strategies for arbitrary protobuf messages of the substrate protocol.

:func:`messages` walks a message descriptor and draws every field: scalars from their whole
range (NaN, infinities, negative numbers, unknown enum numbers, odd strings), nested messages
down to a depth, repeated and map fields. String fields sometimes draw a placeholder
(``@fid``, ``@offer``, ``@agent``, ``@task``) that the fuzz test replaces with a live id, so
calls reach past "unknown id" checks. :func:`defuse` rewrites every command to ``true`` so
whatever the fuzzer launches does nothing on the test machine.
"""
from __future__ import annotations

from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from hypothesis import strategies as st

PLACEHOLDERS = ("@fid", "@offer", "@agent", "@task")
F = FieldDescriptor

_strings = st.one_of(
    st.sampled_from(["", "x", "..", "../etc", "a/b", "\x00", "*", "-", "é", "x" * 300,
                     *PLACEHOLDERS]),
    st.text(max_size=24),
)
_floats = st.one_of(st.sampled_from([0.0, -1.0, 0.1, 1.0, 1e300, -0.0]),
                    st.floats(allow_nan=True, allow_infinity=True))
_INT_RANGES = {
    F.TYPE_INT32: (-2**31, 2**31 - 1), F.TYPE_SINT32: (-2**31, 2**31 - 1),
    F.TYPE_SFIXED32: (-2**31, 2**31 - 1), F.TYPE_UINT32: (0, 2**32 - 1),
    F.TYPE_FIXED32: (0, 2**32 - 1), F.TYPE_INT64: (-2**63, 2**63 - 1),
    F.TYPE_SINT64: (-2**63, 2**63 - 1), F.TYPE_SFIXED64: (-2**63, 2**63 - 1),
    F.TYPE_UINT64: (0, 2**64 - 1), F.TYPE_FIXED64: (0, 2**64 - 1),
}


def _scalar(field: FieldDescriptor) -> st.SearchStrategy:
    kind = field.type
    if kind in (F.TYPE_DOUBLE, F.TYPE_FLOAT):
        if kind == F.TYPE_FLOAT:
            return _floats.map(lambda v: v if abs(v) < 3e38 or v != v else float("inf"))
        return _floats
    if kind == F.TYPE_BOOL:
        return st.booleans()
    if kind == F.TYPE_STRING:
        return _strings
    if kind == F.TYPE_BYTES:
        return st.one_of(st.binary(max_size=48), st.sampled_from([b"", b"\x00" * 16]))
    if kind == F.TYPE_ENUM:
        known = [v.number for v in field.enum_type.values]
        return st.one_of(st.sampled_from(known), st.integers(-3, 1000))
    low, high = _INT_RANGES[kind]
    return st.one_of(st.integers(low, high), st.sampled_from([0, 1, low, high]))


def _repeated(field: FieldDescriptor) -> bool:
    # protobuf >= 6 has ``is_repeated``; older releases only ``label``.
    if hasattr(field, "is_repeated"):
        return bool(field.is_repeated)
    return field.label == F.LABEL_REPEATED


def _value(field: FieldDescriptor, depth: int) -> st.SearchStrategy:
    if field.type == F.TYPE_MESSAGE:
        return messages(field.message_type, depth + 1)
    return _scalar(field)


def messages(descriptor: Descriptor, depth: int = 0, max_depth: int = 4) -> st.SearchStrategy:
    """Arbitrary instances of the message type ``descriptor``."""
    cls = message_factory.GetMessageClass(descriptor)
    if depth > max_depth:
        return st.just(cls())
    parts = {}
    for field in descriptor.fields:
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            key_f, val_f = field.message_type.fields_by_name["key"], \
                field.message_type.fields_by_name["value"]
            strat = st.dictionaries(_value(key_f, depth), _value(val_f, depth), max_size=3)
        elif _repeated(field):
            strat = st.lists(_value(field, depth), max_size=3)
        else:
            strat = _value(field, depth)
        parts[field.name] = st.one_of(st.none(), strat)

    def build(values: dict):
        msg = cls()
        for name, value in values.items():
            if value is None:
                continue
            field = descriptor.fields_by_name[name]
            target = getattr(msg, name)
            if field.message_type is not None and field.message_type.GetOptions().map_entry:
                for k, v in value.items():
                    if hasattr(v, "CopyFrom"):
                        target[k].CopyFrom(v)
                    else:
                        target[k] = v
            elif _repeated(field):
                if field.type == F.TYPE_MESSAGE:
                    for v in value:
                        target.add().CopyFrom(v)
                else:
                    target.extend(value)
            elif field.type == F.TYPE_MESSAGE:
                target.CopyFrom(value)
            else:
                setattr(msg, name, value)
        return msg

    return st.fixed_dictionaries(parts).map(build)


def substitute(msg, ids: dict[str, str]) -> None:
    """Replace placeholder strings in ``msg`` (recursively) with the live ids in ``ids``."""
    for field, value in msg.ListFields():
        if field.type == F.TYPE_MESSAGE:
            if field.message_type.GetOptions().map_entry:
                continue
            for item in (value if _repeated(field) else [value]):
                substitute(item, ids)
        elif field.type == F.TYPE_STRING:
            if _repeated(field):
                for i, item in enumerate(value):
                    if item in ids:
                        value[i] = ids[item]
            elif value in ids:
                setattr(msg, field.name, ids[value])


def defuse(msg) -> None:
    """Make every ``CommandInfo`` in ``msg`` run ``true`` and nothing else."""
    for field, value in msg.ListFields():
        if field.type != F.TYPE_MESSAGE or field.message_type.GetOptions().map_entry:
            continue
        for item in (value if _repeated(field) else [value]):
            if item.DESCRIPTOR.name == "CommandInfo":
                item.Clear()
                item.value, item.shell = "true", True
            else:
                defuse(item)
