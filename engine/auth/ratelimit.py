"""Slowing down password guessing: one limiter shared by SMTP, IMAP and POP3, so an address cannot
spread its guesses across services.

Failures are counted per client address within a sliding window.  The first few cost nothing (people
mistype), later ones earn a growing delay before the reply, and past `max_failures` the address is
refused outright with a temporary error until old failures leave the window.  Loopback is not exempt:
a local proxy or webmail in front of us would otherwise be an unlimited oracle.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable


class AuthFailureLimiter:
    """Thread-safe; memory is bounded by `max_addresses` (least recently seen evicted first).

    IPv6 clients are counted per /64, since one host usually owns a whole /64 and could otherwise
    rotate through addresses for free guesses.
    """

    def __init__(self, max_failures: int = 5, window: float = 300.0,
                 clock: Callable[[], float] = time.monotonic, *, free_failures: int = 2,
                 base_delay: float = 1.0, max_delay: float = 15.0, max_addresses: int = 10_000) -> None:
        if max_failures < 1 or window <= 0 or max_addresses < 1:
            raise ValueError("max_failures, window and max_addresses must be positive")
        self.max_failures = max_failures
        self.window = window
        self.free_failures = free_failures
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.max_addresses = max_addresses
        self._clock = clock
        self._lock = threading.Lock()
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    @staticmethod
    def key(ip: str) -> str:
        """The bucket a client address counts in: the address itself, or its /64 for IPv6."""
        text = ip.strip().strip("[]") if isinstance(ip, str) else str(ip)
        try:
            addr = ipaddress.ip_address(text.split("%", 1)[0])
        except ValueError:
            return text
        if isinstance(addr, ipaddress.IPv6Address):
            if addr.ipv4_mapped is not None:
                return str(addr.ipv4_mapped)
            return str(ipaddress.IPv6Network((addr, 64), strict=False))
        return str(addr)

    def _recent(self, key: str, now: float) -> deque[float] | None:
        times = self._failures.get(key)
        if times is None:
            return None
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._failures[key]
            return None
        return times

    def failures(self, ip: str) -> int:
        """Failures from this address still inside the window."""
        with self._lock:
            times = self._recent(self.key(ip), self._clock())
            return len(times) if times else 0

    def failure(self, ip: str) -> None:
        key = self.key(ip)
        with self._lock:
            now = self._clock()
            times = self._recent(key, now)
            if times is None:
                # Only max_failures entries matter, so each address costs a small fixed amount.
                times = self._failures[key] = deque(maxlen=self.max_failures + self.free_failures + 8)
            times.append(now)
            self._failures.move_to_end(key)
            while len(self._failures) > self.max_addresses:
                self._failures.popitem(last=False)

    def success(self, ip: str) -> None:
        """A correct password forgives the address's earlier mistakes."""
        with self._lock:
            self._failures.pop(self.key(ip), None)

    def delay(self, ip: str) -> float:
        """Seconds to wait before answering a failed attempt: 0, then doubling, capped at max_delay."""
        extra = self.failures(ip) - self.free_failures
        if extra < 0:
            return 0.0
        return float(min(self.max_delay, self.base_delay * 2.0 ** extra))

    def blocked(self, ip: str) -> bool:
        """Too many failures in the window: refuse to even try the password (temporary error)."""
        return self.failures(ip) >= self.max_failures

    def __len__(self) -> int:
        with self._lock:
            return len(self._failures)
