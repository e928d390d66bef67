"""SMTP reception: the MX (port 25) and submission (587 STARTTLS, 465 implicit TLS) listeners.

Accepts mail for local domains from anyone and for anywhere from authenticated users, hands local
recipients to the store and remote ones to the outbound queue, and answers 250 only once the message is
durable.  Parsing (addresses, message) is pure; policy decides; server.py speaks the protocol.
"""
