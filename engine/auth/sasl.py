"""SASL PLAIN and LOGIN as transport-free state machines, shared by SMTP AUTH, IMAP AUTHENTICATE and
POP3 AUTH.

The protocol session sends `Challenge.line` with its own prefix ("334 " in SMTP, "+ " in IMAP and POP3),
feeds each client line to `step()`, and checks the `Credentials` it finally gets against the directory.
Everything a client can send either advances the exchange or raises `SaslError`; nothing else escapes.

    exchange = start("PLAIN", initial_response)      # initial_response: bytes after the mechanism, or None
    result = exchange.first
    while isinstance(result, Challenge):
        send(result.line); result = exchange.step(read_line())
    account = directory.authenticate(result.username, result.password)
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

MECHANISMS = ("PLAIN", "LOGIN")

# RFC 4954 §4 lets an AUTH line with initial response grow to 12288 octets; the same bound serves the
# continuation lines here and in IMAP/POP3, and keeps a hostile client from buffering megabytes.
MAX_LINE = 12288

CANCEL = b"*"            # RFC 4954 §4, RFC 3501 §6.2.2, RFC 5034 §4: the client gives up
EMPTY_RESPONSE = b"="    # RFC 4954 §4, RFC 4959 §3: an initial response that is present but empty


class SaslError(Exception):
    """The exchange failed; str() is the reason, fit for the protocol's error reply.

    `cancelled` is true when the client sent "*" (SMTP answers that with 501, RFC 4954 §4).
    """

    def __init__(self, reason: str, cancelled: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.cancelled = cancelled


@dataclass(frozen=True)
class Challenge:
    """What the server sends next; `data` is the raw challenge, `line` its base64 form for the wire."""

    data: bytes

    @property
    def line(self) -> bytes:
        return base64.b64encode(self.data)


@dataclass(frozen=True)
class Credentials:
    """The identity and password the client offered; not yet checked against anything."""

    username: str
    password: str

    def __repr__(self) -> str:  # keep passwords out of logs and tracebacks
        return f"Credentials(username={self.username!r}, password=<hidden>)"


Step = Challenge | Credentials


def decode_line(line: bytes, max_line: int = MAX_LINE) -> bytes:
    """A client's base64 line as bytes; raises SaslError for "*", overlong lines and bad base64."""
    if not isinstance(line, bytes | bytearray | memoryview):
        raise SaslError("response must be bytes")
    data = bytes(line)
    if len(data) > max_line:
        raise SaslError(f"response line longer than {max_line} octets")
    data = data.rstrip(b"\r\n")
    if data == CANCEL:
        raise SaslError("authentication cancelled", cancelled=True)
    try:
        # validate=True: RFC 4648 §3.3 lets us refuse characters outside the alphabet, and we do.
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise SaslError("response is not valid base64") from None


def _text(field: bytes, what: str) -> str:
    if b"\x00" in field:
        raise SaslError(f"{what} contains a NUL character")
    try:
        return field.decode("utf-8")
    except UnicodeDecodeError:
        raise SaslError(f"{what} is not valid UTF-8") from None


def parse_plain(message: bytes) -> Credentials:
    """RFC 4616 §2: message = [authzid] UTF8NUL authcid UTF8NUL passwd.

    We do not act on behalf of others, so an authorization identity must be empty or the
    authentication identity itself (compared case-insensitively, as addresses are here).
    """
    parts = message.split(b"\x00")
    if len(parts) != 3:
        raise SaslError("PLAIN response must be authzid NUL authcid NUL password")
    authzid, authcid, passwd = (_text(p, name) for p, name in zip(parts, ("authzid", "username", "password"),
                                                                     strict=True))
    if not authcid:
        raise SaslError("PLAIN response has an empty username")
    if not passwd:
        raise SaslError("PLAIN response has an empty password")
    if authzid and authzid.lower() != authcid.lower():
        raise SaslError("authorizing as another identity is not supported")
    return Credentials(authcid, passwd)


class SaslExchange:
    """One authentication exchange; `first` is the server's opening step, `step()` answers each line."""

    mechanism: str
    first: Step

    def __init__(self, max_line: int = MAX_LINE) -> None:
        self.max_line = max_line
        self.done = False

    def step(self, client_line: bytes) -> Step:
        if self.done:
            raise SaslError("authentication exchange already finished")
        try:
            result = self._step(decode_line(client_line, self.max_line))
        except SaslError:
            self.done = True
            raise
        if isinstance(result, Credentials):
            self.done = True
        return result

    def _step(self, data: bytes) -> Step:
        raise NotImplementedError


class PlainExchange(SaslExchange):
    """RFC 4616: one message from the client; without an initial response the server's challenge is
    empty (RFC 4422 §5 item 2b)."""

    mechanism = "PLAIN"

    def __init__(self, initial_response: bytes | None, max_line: int = MAX_LINE) -> None:
        super().__init__(max_line)
        if initial_response is None:
            self.first = Challenge(b"")
        else:
            self.first = self.step(initial_response)

    def _step(self, data: bytes) -> Step:
        return parse_plain(data)


class LoginExchange(SaslExchange):
    """draft-murchison-sasl-login-00: the server asks "Username:" then "Password:", each answered with
    one base64 line.  Clients that send the username as an initial response skip the first question."""

    mechanism = "LOGIN"
    USERNAME = Challenge(b"Username:")
    PASSWORD = Challenge(b"Password:")

    def __init__(self, initial_response: bytes | None, max_line: int = MAX_LINE) -> None:
        super().__init__(max_line)
        self._username: str | None = None
        self.first = self.USERNAME if initial_response is None else self.step(initial_response)

    def _step(self, data: bytes) -> Step:
        if self._username is None:
            username = _text(data, "username")
            if not username:
                raise SaslError("LOGIN username is empty")
            self._username = username
            return self.PASSWORD
        password = _text(data, "password")
        if not password:
            raise SaslError("LOGIN password is empty")
        return Credentials(self._username, password)


def start(mechanism: str, initial_response: bytes | None = None, max_line: int = MAX_LINE) -> SaslExchange:
    """Begins an exchange.  `initial_response` is what followed the mechanism name on the command line
    (still base64; b"=" for an empty one), None when there was nothing.  Raises SaslError for a
    mechanism we do not offer or a bad initial response."""
    name = mechanism.upper() if isinstance(mechanism, str) else ""
    if initial_response == EMPTY_RESPONSE:
        initial_response = b""
    if name == "PLAIN":
        return PlainExchange(initial_response, max_line)
    if name == "LOGIN":
        return LoginExchange(initial_response, max_line)
    raise SaslError(f"unsupported authentication mechanism {str(mechanism)[:40]!r}")
