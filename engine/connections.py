"""Counting open connections per client address, so one host cannot take every slot of a service.

Each listener (SMTP, IMAP, POP3) owns one counter; `acquire` admits a connection or says it is one too
many, `release` gives the slot back when the connection ends.  Thread-safe, though listeners all live on
the engine loop.
"""

from __future__ import annotations

import functools
import ipaddress
import threading
from collections import Counter


@functools.lru_cache(maxsize=4096)
def client_key(ip: str) -> str:
    """The address a limit is counted against: IPv4-mapped IPv6 counts as its IPv4 address.

    Cached: every connection asks twice (admit, release), and the same few clients come back."""
    try:
        addr = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return ip
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return str(addr.ipv4_mapped)
    return str(addr)


class ConnectionCounter:
    """At most `limit` connections open per client address at any moment."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("a connection limit must be at least 1")
        self.limit = limit
        self._open: Counter[str] = Counter()
        self._lock = threading.Lock()

    def acquire(self, ip: str) -> bool:
        """Takes a slot for `ip`; False (and nothing taken) when it already has `limit` open."""
        key = client_key(ip)
        with self._lock:
            if self._open[key] >= self.limit:
                return False
            self._open[key] += 1
            return True

    def release(self, ip: str) -> None:
        """Gives back a slot taken by a successful `acquire`."""
        key = client_key(ip)
        with self._lock:
            left = self._open[key] - 1
            if left > 0:
                self._open[key] = left
            else:
                del self._open[key]

    def count(self, ip: str) -> int:
        with self._lock:
            return self._open.get(client_key(ip), 0)

    @property
    def total(self) -> int:
        """Connections open from all addresses (for the dashboard)."""
        with self._lock:
            return sum(self._open.values())
