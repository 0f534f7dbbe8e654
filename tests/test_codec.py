"""The profile codec (offerd.store.encode, offerd.store.decode): exact round trips of every
value type, and CodecError (never another exception) for any malformed input."""
from __future__ import annotations

import datetime
import math
import random
import struct

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from offerd.store import codec
from offerd.store.codec import CodecError
from offerd.store.decode import decode_attrs, decode_value
from offerd.store.encode import encode_attrs, encode_value

INT_MIN, INT_MAX = -(2**63), 2**63 - 1

ints = st.one_of(st.integers(INT_MIN, INT_MAX),
                 st.sampled_from([0, 1, -1, 127, -128, 128, 32767, -32769, 2**31, INT_MIN, INT_MAX]))
floats = st.one_of(st.floats(allow_nan=False, allow_infinity=False),
                   st.sampled_from([0.0, -0.0, 1e308, -1e308, 5e-324, -5e-324, 2.2250738585072014e-308,
                                    1.7976931348623157e308]))
dates = st.one_of(st.dates(), st.sampled_from([datetime.date.min, datetime.date.max]))
texts = st.one_of(st.text(), st.sampled_from(["", "\x00", "\x00\x01", "é", "日本語", "🎉", "a\x00b"]))
keys = st.text(max_size=30) | st.sampled_from(["", "age", "\x00", "k\x00", "ключ", "🔑" * 63])
values = st.one_of(
    texts, ints, floats, st.booleans(), dates,
    st.frozensets(texts, max_size=6),
    st.lists(texts, max_size=5).map(tuple),
    st.lists(ints, max_size=5).map(tuple),
    st.lists(floats, max_size=5).map(tuple),
    st.lists(dates, max_size=5).map(tuple),
    st.lists(st.one_of(texts, ints, floats, dates), max_size=5).map(tuple),  # mixed
)
profiles = st.dictionaries(keys, values, max_size=12)


def same(a, b) -> bool:
    """Equal with exact types throughout (and -0.0 kept apart from 0.0)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    if isinstance(a, tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, frozenset):
        return a == b and all(type(x) is str for x in b)
    return a == b


def check_roundtrip(attrs: dict) -> bytes:
    data = encode_attrs(attrs)
    assert type(data) is bytes and data[0] == codec.FORMAT_VERSION
    expected = {k: v for k, v in attrs.items() if v is not None}
    for _ in range(2):  # the second decode takes the fast path where there is one
        got = decode_attrs(data)
        assert got == expected
        assert set(got) == set(expected)
        for k, v in expected.items():
            assert same(got[k], v), (k, got[k], v)
    return data


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(profiles)
@example({})
@example({"": ""})
@example({"i": INT_MAX, "j": INT_MIN, "k": -INT_MAX, "b": True, "c": False, "z": 0})
@example({"f": -0.0, "g": 1e308, "h": 5e-324, "d0": datetime.date.min, "d1": datetime.date.max})
@example({"s": frozenset(), "t": (), "u": ("",), "v": frozenset({""})})
def test_roundtrip(attrs):
    check_roundtrip(attrs)


def test_none_is_skipped():
    data = encode_attrs({"a": None, "b": 1})
    assert decode_attrs(data) == {"b": 1}
    assert encode_attrs({"a": None}) == encode_attrs({})


def test_exact_types():
    attrs = {"i": 1, "f": 1.0, "b": True, "c": False, "z": 0, "d": datetime.date(2024, 2, 29),
             "s": frozenset({"x"}), "t": (1, 2.0, "3", datetime.date(2000, 1, 1))}
    got = decode_attrs(encode_attrs(attrs))
    assert type(got["i"]) is int and type(got["f"]) is float
    assert got["b"] is True and got["c"] is False and type(got["z"]) is int
    assert type(got["d"]) is datetime.date
    assert type(got["s"]) is frozenset and type(got["t"]) is tuple
    assert [type(x) for x in got["t"]] == [int, float, str, datetime.date]


def test_values_from_check_attributes():
    from offerd.lang.types import Type, list_of, SET_STRING
    from offerd.lang.values import check_attributes
    t = lambda name: Type(name)  # noqa: E731
    schema = {"s": t("string"), "i": t("int"), "f": t("float"), "b": t("bool"), "d": t("date"),
              "tags": SET_STRING, "li": list_of(t("int")), "lf": list_of(t("float")),
              "ld": list_of(t("date")), "ls": list_of(t("string")), "gone": t("int")}
    raw = {"s": "x", "i": 3, "f": 2, "b": False, "d": datetime.date(1999, 12, 31),
           "tags": ["a", "b"], "li": [1, 2], "lf": [1, 2.5], "ld": [datetime.date(2001, 1, 1)],
           "ls": [], "gone": None}
    checked = check_attributes(schema, raw, "contact")
    got = decode_attrs(encode_attrs(checked))
    assert got == checked
    assert all(same(got[k], v) for k, v in checked.items())


def test_deterministic_sets():
    a = frozenset(f"tag{i}" for i in range(50))
    b = frozenset(sorted(a, reverse=True))
    assert encode_attrs({"t": a}) == encode_attrs({"t": b})


def test_wide_layouts():
    # more than 255 attributes of one type, a key text over 64 KiB, big sets, long strings
    attrs = {f"k{i:04d}" + "x" * 200: i for i in range(400)}
    attrs["tags"] = frozenset(str(i) for i in range(70000))
    attrs["long"] = "é" * 100000
    attrs["tup"] = tuple(range(300))
    check_roundtrip(attrs)


def test_separator_when_text_holds_nul():
    attrs = {"\x00": "\x00", "a\x00": frozenset({"\x00\x01", ""}), "t": ("\x00", "\x01")}
    check_roundtrip(attrs)


def test_encode_value():
    for v in ["", 1, -0.0, True, datetime.date.max, frozenset({"a"}), (1, "b")]:
        assert same(decode_value(encode_value(v)), v)
    with pytest.raises(CodecError):
        decode_value(encode_attrs({"a": 1}))


def test_oversize_key():
    encode_attrs({"k" * 255: 1})
    encode_attrs({"é" * 127: 1})  # 254 bytes
    with pytest.raises(ValueError):
        encode_attrs({"k" * 256: 1})
    with pytest.raises(ValueError):
        encode_attrs({"é" * 128: 1})  # 128 characters, 256 bytes
    with pytest.raises(ValueError):
        encode_attrs({"🔑" * 64: 1})


@pytest.mark.parametrize("value, exc", [
    (2**63, ValueError), (INT_MIN - 1, ValueError), (math.inf, ValueError), (math.nan, ValueError),
    ((1, math.nan), ValueError), ("\ud800", ValueError), (datetime.datetime(2024, 1, 1), TypeError),
    ([1], TypeError), (frozenset({1}), TypeError), ((True,), TypeError), (b"x", TypeError),
    ({"a": 1}, TypeError),
])
def test_encode_rejects(value, exc):
    with pytest.raises(exc):
        encode_attrs({"a": value})


# --- malformed input -------------------------------------------------------------------------

SAMPLE = {"name": "Zoë Martin", "age": 42, "cart_total": 123.45, "vip": True, "churned": False,
          "birthday": datetime.date(1983, 5, 17), "tags": frozenset({"sports", "travel", "x"}),
          "recent": (3, 1.5, "a", datetime.date(2020, 1, 1)), "big": -(2**40)}


def decode_or_codec_error(data):
    try:
        out = decode_attrs(data)
    except CodecError as e:
        assert "byte" in str(e) or "expected" in str(e), str(e)
        return None
    assert isinstance(out, dict)
    return out


def test_every_truncation_fails():
    for attrs in (SAMPLE, {k: v for k, v in SAMPLE.items() if k != "recent"}, {"": ""}, {}):
        data = encode_attrs(attrs)
        decode_attrs(data)  # warm the fast path's caches
        for cut in range(len(data)):
            with pytest.raises(CodecError):
                decode_attrs(data[:cut])


def test_trailing_bytes_fail():
    for attrs in (SAMPLE, {"a": 1}, {}):
        data = encode_attrs(attrs)
        for extra in (b"\x00", b"x", b"\xff"):
            with pytest.raises(CodecError):
                decode_attrs(data + extra)


def test_specific_errors():
    good = encode_attrs({"d": datetime.date(2000, 1, 1), "f": 1.0, "s": "x"})
    with pytest.raises(CodecError, match="version 9 at byte 0"):
        decode_attrs(b"\x09" + good[1:])
    with pytest.raises(CodecError, match="flags"):
        decode_attrs(good[:1] + b"\xff" + good[2:])
    # a date ordinal of 0 and one past 9999-12-31
    for ordinal in (0, codec.MAX_ORDINAL + 1):
        bad = encode_attrs({"d": datetime.date(2000, 1, 1)}).replace(
            struct.pack("<I", datetime.date(2000, 1, 1).toordinal()), struct.pack("<I", ordinal))
        with pytest.raises(CodecError, match="date ordinal .* at byte 12"):
            decode_attrs(bad)
    nan = encode_attrs({"f": 1.0}).replace(struct.pack("<d", 1.0), struct.pack("<d", math.nan))
    with pytest.raises(CodecError, match="non-finite"):
        decode_attrs(nan)
    bad_utf8 = encode_attrs({"s": "xy"})[:-1] + b"\xff"
    with pytest.raises(CodecError, match="UTF-8 at byte"):
        decode_attrs(bad_utf8)
    dup = encode_attrs({"a": 1, "b": 2}).replace(b"\x00b", b"\x00a")
    with pytest.raises(CodecError, match="duplicate"):
        decode_attrs(dup)
    with pytest.raises(CodecError, match="tuple element kind"):
        decode_attrs(encode_attrs({"t": (1,)}).replace(b"\x01\x02", b"\x01\x07", 1))
    with pytest.raises(CodecError):
        decode_attrs("not bytes")
    assert decode_attrs(memoryview(good)) == decode_attrs(bytearray(good))


def test_huge_length_fields_fail_fast():
    # counts and sizes claiming far more than the record holds are refused before allocating
    wide = bytes((1, 0x32)) + struct.pack("<8HI", *([0xFFFF] * 8), 0xFFFFFFFF)
    with pytest.raises(CodecError, match="truncated"):
        decode_attrs(wide + b"\xff" * 64)
    sizes = bytes((1, 0x02, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0)) + b"\xff" * 8
    with pytest.raises(CodecError):
        decode_attrs(sizes)


@settings(max_examples=300, deadline=None)
@given(profiles, st.data())
def test_byte_flips_never_raise_other_errors(attrs, data):
    enc = encode_attrs(attrs)
    decode_attrs(enc)
    buf = bytearray(enc)
    for _ in range(data.draw(st.integers(1, 4))):
        if not buf:
            break
        i = data.draw(st.integers(0, len(buf) - 1))
        buf[i] = data.draw(st.integers(0, 255))
    decode_or_codec_error(bytes(buf))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_never_raise_other_errors(blob):
    decode_or_codec_error(blob)
    decode_or_codec_error(b"\x01" + blob)


def test_seeded_mutation_fuzz():
    """Many cheap mutations of a few valid records (flips, inserts, deletes, splices)."""
    rnd = random.Random(1234)
    seeds = [encode_attrs(a) for a in (SAMPLE, {"a": 1, "b": "x"}, {"t": ("a", 2)},
                                        {"s": frozenset({"p", "q"}), "d": datetime.date.min})]
    for seed in seeds:
        decode_attrs(seed)
    for _ in range(20000):
        buf = bytearray(rnd.choice(seeds))
        op = rnd.randrange(4)
        i = rnd.randrange(len(buf))
        if op == 0:
            buf[i] ^= 1 << rnd.randrange(8)
        elif op == 1:
            buf[i] = rnd.randrange(256)
        elif op == 2:
            buf.insert(i, rnd.randrange(256))
        else:
            del buf[i]
        decode_or_codec_error(bytes(buf))
