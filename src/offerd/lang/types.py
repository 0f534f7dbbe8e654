"""ODL's types. Every value may also be null (absent); nullability is tracked per node."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Type:
    name: str  # string int float bool date duration time list set error
    elem: Type | None = None  # for list and set

    def __str__(self) -> str:
        return f"{self.name}<{self.elem}>" if self.elem else self.name

    @property
    def numeric(self) -> bool:
        return self.name in ("int", "float")

    @property
    def collection(self) -> bool:
        return self.name in ("list", "set")


STRING = Type("string")
INT = Type("int")
FLOAT = Type("float")
BOOL = Type("bool")
DATE = Type("date")
DURATION = Type("duration")
TIME = Type("time")
ERROR = Type("error")  # an expression already reported; silences cascades

SCALARS = {t.name: t for t in (STRING, INT, FLOAT, BOOL, DATE)}
LIST_ELEMS = ("string", "int", "float", "date")
ORDERED = ("int", "float", "string", "date", "duration", "time")  # what <, min and max compare


def list_of(elem: Type) -> Type:
    return Type("list", elem)


SET_STRING = Type("set", STRING)


def unify(a: Type, b: Type) -> Type | None:
    """The common type of two operands (int widens to float), or None."""
    if a == ERROR or b == ERROR:
        return ERROR
    if a == b:
        return a
    if a.numeric and b.numeric:
        return FLOAT
    return None
