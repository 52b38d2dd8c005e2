"""Text a person reads or wrote: config files decoded whatever their encoding, errors in one line.

A small text file a person wrote (devloop.yaml, .dockerignore) is decoded whatever its encoding.

UTF-8 is the rule; a byte-order mark says UTF-8, UTF-16 or UTF-32 (what Windows editors save,
and what the YAML spec accepts). Anything else is refused with the line and byte at fault, so the
caller can say `file:line: not UTF-8 ...` in one line instead of a UnicodeDecodeError.
"""

from __future__ import annotations

import codecs

_BOMS = (  # longest first: UTF-32-LE's BOM starts with UTF-16-LE's
    (codecs.BOM_UTF32_LE, "utf-32-le"), (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)


class NotText(ValueError):
    """The bytes are not text in a known encoding; `line` (1-based) and `message` say where."""

    def __init__(self, line: int, message: str) -> None:
        self.line = line
        self.message = message
        super().__init__(f"line {line}: {message}")


def decode_text(data: bytes) -> str:
    """The text of `data` (BOM removed), or NotText naming the first bad byte's line."""
    encoding, start = "utf-8", 0
    for bom, name in _BOMS:
        if data.startswith(bom):
            encoding, start = name, len(bom)
            break
    try:
        text = data[start:].decode(encoding)
    except UnicodeDecodeError as exc:
        line = data[start:start + exc.start].count(b"\n") + 1 if encoding == "utf-8" else 1
        bad = data[start + exc.start:start + exc.end][:4].hex(" ")
        raise NotText(line, f"not {encoding.upper()} text (byte {bad} at offset "
                            f"{start + exc.start}); save the file as UTF-8") from None
    if "\x00" in text:
        line = text.count("\n", 0, text.index("\x00")) + 1
        raise NotText(line, "contains a NUL character (a binary file?); save it as UTF-8 text")
    return text

def one_line(text: str, limit: int = 400) -> str:
    """Collapse whitespace so an error never spans lines, and cap its length."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."
