"""Text from files and child processes, made safe to print on a terminal.

A process's name, its output, a lesson's sentence or a record's line may hold ESC,
CR, BEL or a right-to-left override; printed raw, such a string moves the cursor,
clears the screen or reorders what the student reads. :func:`printable` writes each
of them as an escape (``\\x1b``, ``\\u202e``) instead.
"""

from __future__ import annotations

import unicodedata


def printable(text: str) -> str:
    """``text`` safe for a terminal: control characters (ESC, CR, BEL, newline...),
    format characters (right-to-left overrides) and line and paragraph separators are
    written as ``\\x1b``, ``\\u202e``; other spaces (no-break, ideographic) as a space.
    Nothing of a file or of a process's output can move the cursor."""
    if text.isprintable():
        return text
    out = []
    for ch in text:
        if ch.isprintable() or ch == " ":
            out.append(ch)
        elif unicodedata.category(ch) == "Zs":
            out.append(" ")
        else:
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
    return "".join(out)
