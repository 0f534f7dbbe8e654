"""Python values as offerd.v1 `Value` messages and back: the conversion a client and the
server share, with protobuf alone (it loads neither the engine, the store nor the language)."""
from __future__ import annotations

import datetime

from .v1 import offerd_pb2 as pb


def to_value(x) -> pb.Value:
    """str, int, float, bool, datetime.date, or a collection of strings, as a Value."""
    if isinstance(x, bool):
        return pb.Value(bool_value=x)
    if isinstance(x, int):
        return pb.Value(int_value=x)
    if isinstance(x, float):
        return pb.Value(float_value=x)
    if isinstance(x, str):
        return pb.Value(string_value=x)
    if isinstance(x, datetime.date):
        return pb.Value(date_value=pb.Date(year=x.year, month=x.month, day=x.day))
    return pb.Value(strings_value=pb.StringList(values=sorted(str(i) for i in x)))


def from_value(name: str, v: pb.Value):
    """The Python value of `v` (strings_value as a list); ValueError, naming `name`, for an
    empty Value or a date that does not exist."""
    kind = v.WhichOneof("kind")
    if kind is None:
        raise ValueError(f"{name}: the value is empty: set one of string_value, int_value, float_value, "
                         "bool_value, date_value, strings_value")
    if kind == "date_value":
        d = v.date_value
        try:
            return datetime.date(d.year, d.month, d.day)
        except ValueError as e:
            raise ValueError(f"{name}: {d.year:04d}-{d.month:02d}-{d.day:02d} is not a date ({e})") from None
    if kind == "strings_value":
        return list(v.strings_value.values)
    return getattr(v, kind)
