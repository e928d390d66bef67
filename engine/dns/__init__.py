"""Delivery routing from DNS: which hosts take mail for a domain (MX, null MX, A/AAAA fallback), in order.

Lookups go through dnspython's async resolver, over `[dns] nameservers` or the system's; every failure is
classified as permanent (bounce) or temporary (retry).
"""

from engine.dns.routing import MXHost, Resolver, Route, RouteError, order_mx

__all__ = ["MXHost", "Resolver", "Route", "RouteError", "order_mx"]
