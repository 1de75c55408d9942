"""Where text stops being UTF-8: its first bad byte, named so that a person can find it.

Python's codec names a position within whatever buffer it was given: pandas decodes a CSV in pieces of its own, so
"position 53201" pointed nowhere in a file whose bad byte was on line 100,002 (trial 20), and orjson puts every
bad byte at "char 0".
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class NotUtf8:
    """The first byte that is not UTF-8: its value, its offset (from 0) in its line or text, and the codec's reason."""

    byte: int
    offset: int
    reason: str  # "invalid start byte", "invalid continuation byte", "unexpected end of data", ...
    line: int | None = None  # counted from 1, when the text was read as lines

    def describe(self) -> str:
        where = f"offset {self.offset}" if self.line is None else f"line {self.line:,}, offset {self.offset}"
        return f"byte 0x{self.byte:02x} at {where} ({self.reason})"


def not_utf8(data: bytes) -> NotUtf8 | None:
    """The first byte of ``data`` that is not UTF-8, or None if all of it is."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as error:
        return NotUtf8(data[error.start], error.start, error.reason)
    return None


def first_line_not_utf8(lines: Iterable[bytes]) -> NotUtf8 | None:
    """The first bad byte of the first line that is not UTF-8, with that line's number; None if every line is."""
    for number, line in enumerate(lines, start=1):
        found = not_utf8(line)
        if found is not None:
            return NotUtf8(found.byte, found.offset, found.reason, number)
    return None
