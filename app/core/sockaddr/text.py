"""The sockaddr as lines of text: the annotated byte grid, byte orders and steps.

:func:`render_lines` is what ``observatory sockaddr`` prints and the Bytes
tab shows: the lecture's own line first, then offset, bytes and meaning of
every field, the ``hton*()`` values in both byte orders, and the notes.
"""

from __future__ import annotations

import textwrap

from app.core.sockaddr.layout import (
    ByteOrder,
    ByteOrderRow,
    SockaddrLayout,
    hex_bytes,
    steps,
)


def hton_sentence(row: ByteOrderRow, byteorder: ByteOrder) -> str:
    """What ``htons()``/``htonl()`` does to this value on a machine of ``byteorder``.

    Three true cases: the bytes are a palindrome (the same on every machine:
    never "big-endian too" on a little-endian one); a big-endian machine (no
    change); a little-endian machine (the bytes swap, and the number read here
    changes).
    """
    back = row.function.replace("hton", "ntoh")
    digits = len(row.network_bytes) * 2
    if row.palindrome:
        return (
            f"{row.call} gives {row.argument} back: its bytes {hex_bytes(row.network_bytes)} "
            f"read the same both ways (a byte palindrome), so {row.function}() and {back}() "
            f"change nothing on any machine; this machine is {byteorder}-endian"
        )
    if byteorder == "big":
        return f"{row.call} changes nothing: this machine is big-endian, the network's byte order"
    return (
        f"{row.call} = 0x{row.converted:0{digits}X} = {row.converted} read as a number on "
        f"this little-endian machine; {back}() turns it back into {row.argument}"
    )


BYTES_PER_ROW = 8


def render_lines(layout: SockaddrLayout, width: int | None = None) -> list[str]:
    """The lecture's line first, then the annotated grid and the byte orders.

    Args:
        layout: what :func:`build_sockaddr` returned.
        width: wrap the explanations (never the first line) to this many
            columns; None leaves every explanation on one line.
    """
    lines = [layout.lecture_line]
    summary = (
        f"struct {layout.struct_name} for {layout.address} port {layout.port}: "
        f"{layout.size} bytes; this machine is {layout.host_byteorder}-endian, "
        "TCP/IP is big-endian"
    )
    lines.extend(_wrap(summary, width, "    "))
    bytes_width = BYTES_PER_ROW * 3 - 1
    lines.append(f"{'offset':<7} {'bytes':<{bytes_width}}  meaning")
    indent = 7 + 1 + bytes_width + 2
    for f in layout.fields:
        chunks = [f.data[i : i + BYTES_PER_ROW] for i in range(0, f.size, BYTES_PER_ROW)]
        meaning = _wrap(f.meaning, None if width is None else max(width - indent, 20))
        for n in range(max(len(chunks), len(meaning))):
            offset = f.span if n == 0 else ""
            chunk = hex_bytes(chunks[n]) if n < len(chunks) else ""
            text = meaning[n] if n < len(meaning) else ""
            lines.append(f"{offset:<7} {chunk:<{bytes_width}}  {text}".rstrip())
    rest = render_byte_order(layout) + [f"note: {n}" for n in layout.notes]
    for line in rest:
        lines.extend(_wrap(line, width, "    "))
    return lines


def _wrap(text: str, width: int | None, indent: str = "") -> list[str]:
    if width is None or len(text) <= width:
        return [text]
    return textwrap.wrap(text, width, subsequent_indent=indent, break_on_hyphens=False)


def render_byte_order(layout: SockaddrLayout) -> list[str]:
    """The hton* values: the bytes in host and in network order, and as numbers."""
    order = layout.host_byteorder
    lines = [f"{'value':<24} {'this machine (' + order + '-endian)':<30} network (big-endian)"]
    for r in layout.byte_order:
        lines.append(f"{r.label:<24} {hex_bytes(r.host_bytes):<30} {hex_bytes(r.network_bytes)}")
    for r in layout.byte_order:
        lines.append(hton_sentence(r, order))
    return lines


def render_text(layout: SockaddrLayout) -> str:
    return "\n".join(render_lines(layout)) + "\n"


def render_steps(layout: SockaddrLayout) -> list[str]:
    """The lecture's step-by-step dump: one line per statement, then what each did."""
    all_steps = steps(layout)
    lines = [s.line for s in all_steps]
    width = max(len(s.statement) for s in all_steps)
    for n, s in enumerate(all_steps, 1):
        lines.append(f"step {n}: {s.statement:<{width}}  {s.note}")
    return lines
