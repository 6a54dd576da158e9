"""The bytes of ``struct sockaddr_in`` / ``sockaddr_in6``, as Linux lays them out.

The lecture fills a ``struct sockaddr_in`` one field at a time and dumps its
16 bytes after each assignment with ``printf("[%d]=%X,", i, byte)``::

    [0]=2,[1]=0,[2]=3,[3]=E8,[4]=7F,[5]=0,[6]=0,[7]=1,[8]=0,...,[15]=0,

This package builds the same bytes with :mod:`struct` (no C compiler needed)
and explains every one of them. The layouts (``include/uapi/linux/in.h`` and
``in6.h``)::

    struct sockaddr_in  {  sa_family_t sin_family;    /* host byte order   */
                           __be16      sin_port;      /* network order     */
                           struct in_addr sin_addr;   /* __be32, network   */
                           unsigned char  sin_zero[8]; };      /* 16 bytes */

    struct sockaddr_in6 {  sa_family_t sin6_family;   /* host byte order   */
                           __be16      sin6_port;     /* network order     */
                           __be32      sin6_flowinfo; /* network order     */
                           struct in6_addr sin6_addr; /* 16 bytes, network */
                           __u32       sin6_scope_id; /* host byte order   */ };  /* 28 */

The family is the only field kept in the *host's* byte order: it never
leaves the machine, while port and address travel in packet headers, which
TCP/IP writes big-endian ("network byte order").

Everything here is a pure function: no socket is opened, no name is looked
up (``localhost`` is refused: the lecture's ``inet_addr()`` does not resolve
names either).

Port 0 is accepted on purpose: it is a valid value of ``sin_port``. Given to
``bind()`` it means "let the kernel choose a free (ephemeral) port"; given to
``connect()`` it fails, since nothing can listen on port 0.

Where things are: :mod:`.parse` reads what a user types (port, address,
endpoint), :mod:`.layout` builds the bytes and their meanings, :mod:`.text`
lays them out as lines. Import from ``app.core.sockaddr`` itself.
"""

from app.core.sockaddr.layout import (
    AF_INET,
    AF_INET6,
    HOST_BYTEORDER,
    SOCKADDR_IN6_SIZE,
    SOCKADDR_IN_SIZE,
    ByteOrder,
    ByteOrderRow,
    Field,
    SockaddrLayout,
    Step,
    build_sockaddr,
    hex_bytes,
    is_palindrome,
    lecture_line,
    lecture_steps,
    steps,
)
from app.core.sockaddr.parse import SockaddrError, parse_address, parse_endpoint, parse_port
from app.core.sockaddr.text import (
    BYTES_PER_ROW,
    hton_sentence,
    render_byte_order,
    render_lines,
    render_steps,
    render_text,
)

__all__ = [
    "AF_INET",
    "AF_INET6",
    "BYTES_PER_ROW",
    "HOST_BYTEORDER",
    "SOCKADDR_IN6_SIZE",
    "SOCKADDR_IN_SIZE",
    "ByteOrder",
    "ByteOrderRow",
    "Field",
    "SockaddrError",
    "SockaddrLayout",
    "Step",
    "build_sockaddr",
    "hex_bytes",
    "hton_sentence",
    "is_palindrome",
    "lecture_line",
    "lecture_steps",
    "parse_address",
    "parse_endpoint",
    "parse_port",
    "render_byte_order",
    "render_lines",
    "render_steps",
    "render_text",
    "steps",
]
