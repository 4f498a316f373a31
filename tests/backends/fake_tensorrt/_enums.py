"""pybind11-style enums built from a surface file.

Behaviour copied from pybind11's ``py::enum_`` (pybind11/pybind11.h, enum_base): members are instances of the
enum class, ``int(m)``, ``m.name``, ``m.value``, ``str(m) == "BuilderFlag.TF32"``, hashable, equal only to
members of the same enum; an enum declared with ``py::arithmetic()`` (TensorRT does this for
``ILogger.Severity``, python/src/infer/pyCore.cpp bindCore) also compares with ``<``/``<=`` and with ints.
"""

from __future__ import annotations


class EnumMember:
    __slots__ = ("_name", "_value")
    _arithmetic = False

    def __init__(self, value):  # pybind enums can be built from their int: trt.DataType(0)
        for member in type(self).__members__.values():
            if member._value == int(value):
                self._name, self._value = member._name, member._value
                return
        raise ValueError(f"{value} is not a valid {type(self).__name__}")

    @classmethod
    def _make(cls, name: str, value: int):
        obj = object.__new__(cls)
        obj._name, obj._value = name, value
        return obj

    name = property(lambda self: self._name)
    value = property(lambda self: self._value)

    def __int__(self):
        return self._value

    __index__ = __int__

    def __hash__(self):
        return hash(self._value)

    def __eq__(self, other):
        if isinstance(other, EnumMember):
            return type(other) is type(self) and other._value == self._value
        if self._arithmetic and isinstance(other, int):
            return self._value == other
        return NotImplemented

    def __ne__(self, other):
        result = self.__eq__(other)
        return result if result is NotImplemented else not result

    def _cmp_value(self, other):
        if not self._arithmetic:
            raise TypeError(f"'{type(self).__name__}' members are not ordered (no py::arithmetic)")
        if isinstance(other, EnumMember) and type(other) is type(self):
            return other._value
        if isinstance(other, int):
            return other
        raise TypeError(f"cannot compare {type(self).__name__} with {type(other).__name__}")

    def __lt__(self, other):
        return self._value < self._cmp_value(other)

    def __le__(self, other):
        return self._value <= self._cmp_value(other)

    def __gt__(self, other):
        return self._value > self._cmp_value(other)

    def __ge__(self, other):
        return self._value >= self._cmp_value(other)

    def __str__(self):
        return f"{type(self).__name__}.{self._name}"

    def __repr__(self):
        return f"<{type(self).__name__}.{self._name}: {self._value}>"


def make_enum(name: str, members: dict, arithmetic: bool = False, extra: dict | None = None) -> type:
    """An enum class called ``name`` with ``members`` (name -> int), as the surface file lists them."""
    cls = type(name, (EnumMember,), {"__slots__": (), "_arithmetic": arithmetic, **(extra or {})})
    table = {}
    for member, value in members.items():
        obj = cls._make(member, value)
        table[member] = obj
        setattr(cls, member, obj)
    cls.__members__ = table
    return cls
