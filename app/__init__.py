"""Connection Observatory: watch TCP/IP sockets while you learn them."""

__version__ = "0.1.0"
