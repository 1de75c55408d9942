"""The first byte that is not UTF-8, as a person looks for it: a line and an offset in it, or an offset."""

from __future__ import annotations

from driftloop.core.text_encoding import NotUtf8, first_line_not_utf8, not_utf8


def test_utf8_text_has_no_bad_byte() -> None:
    assert not_utf8("prix: 3 €, café".encode()) is None
    assert first_line_not_utf8([b"a,b\n", "x,\u00e9t\u00e9\n".encode(), b""]) is None


def test_the_first_bad_byte_is_named_with_its_offset_and_the_codecs_reason() -> None:
    assert not_utf8(b"ok \xff then \xfe") == NotUtf8(0xFF, 3, "invalid start byte")
    assert not_utf8(b"cut \xc3") == NotUtf8(0xC3, 4, "unexpected end of data")
    assert not_utf8(b"\xed\xa0\x80") == NotUtf8(0xED, 0, "invalid continuation byte")  # an encoded surrogate


def test_a_bad_line_is_counted_from_one_and_its_offset_from_the_line_start() -> None:
    lines = [b"id,city\n", b"1,Paris\n", b"2,Montr\xe9al\n", b"3,\xff\n"]
    found = first_line_not_utf8(lines)
    assert found == NotUtf8(0xE9, 7, "invalid continuation byte", line=3)
    assert found.describe() == "byte 0xe9 at line 3, offset 7 (invalid continuation byte)"
    assert NotUtf8(0xFF, 20, "invalid start byte").describe() == "byte 0xff at offset 20 (invalid start byte)"


def test_a_line_number_is_written_with_thousands_separators() -> None:
    lines = [b"x\n"] * 100_001 + [b"w\xe9b\n"]
    found = first_line_not_utf8(lines)
    assert found is not None
    assert found.describe().startswith("byte 0xe9 at line 100,002, offset 1 ")
