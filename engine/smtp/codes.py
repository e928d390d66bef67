"""SMTP reply codes (RFC 5321 §4.2) with their enhanced status codes (RFC 3463, RFC 2034).

Every reply the server sends, and every reply the client and the tests look for, is named here, so a
code's meaning is decided once.  `Reply` renders as the line on the wire: "550 5.1.1 No such user here".
RFC 2034 §3: the enhanced code prefixes the text of every reply except the greeting and the replies to
HELO/EHLO; AUTH challenges (334) carry base64 instead (RFC 4954 §4).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_ENHANCED = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})(?:\s+|$)")


@dataclass(frozen=True)
class Reply:
    code: int
    status: str          # enhanced status code "5.1.1", or "" where RFC 2034 says none
    text: str

    def __str__(self) -> str:
        return self.line()

    def line(self) -> str:
        """The single-line reply without CRLF."""
        if self.status:
            return f"{self.code} {self.status} {self.text}"
        return f"{self.code} {self.text}"

    def lines(self, *more: str) -> list[str]:
        """A multi-line reply (RFC 5321 §4.2.1): the text first, then `more`, all with the same code."""
        texts = [self.text, *more]
        prefix = f"{self.status} " if self.status else ""
        out = [f"{self.code}-{prefix}{t}" for t in texts[:-1]]
        out.append(f"{self.code} {prefix}{texts[-1]}")
        return out

    def with_text(self, text: str) -> Reply:
        """The same code with a more specific sentence (e.g. naming the address)."""
        return Reply(self.code, self.status, text)

    @property
    def positive(self) -> bool:
        return 200 <= self.code < 400

    @property
    def transient(self) -> bool:
        return 400 <= self.code < 500

    @property
    def permanent(self) -> bool:
        return self.code >= 500


def split_enhanced(text: str) -> tuple[str, str]:
    """Splits a reply's text into (enhanced status code, rest); ("", text) when there is none."""
    m = _ENHANCED.match(text)
    if not m:
        return "", text
    return f"{m.group(1)}.{m.group(2)}.{m.group(3)}", text[m.end():]


# --- 2xx: success --------------------------------------------------------------------------------
GREETING = Reply(220, "", "ESMTP Postroom")                         # RFC 5321 §4.3.1; no enhanced code
READY_FOR_TLS = Reply(220, "2.0.0", "Ready to start TLS")          # RFC 3207 §4
CLOSING = Reply(221, "2.0.0", "Bye")
AUTH_OK = Reply(235, "2.7.0", "Authentication successful")         # RFC 4954 §6
OK = Reply(250, "2.0.0", "OK")
SENDER_OK = Reply(250, "2.1.0", "Sender OK")
RECIPIENT_OK = Reply(250, "2.1.5", "Recipient OK")
MESSAGE_ACCEPTED = Reply(250, "2.0.0", "Message accepted")
CHUNK_OK = Reply(250, "2.0.0", "Chunk received")                   # RFC 3030 §2
CANNOT_VRFY = Reply(252, "2.5.0", "Cannot VRFY user, but will accept message and attempt delivery")
HELP = Reply(214, "2.0.0", "See RFC 5321")

# --- 3xx: intermediate ---------------------------------------------------------------------------
START_DATA = Reply(354, "2.0.0", "End data with <CR><LF>.<CR><LF>")  # RFC 5321 §4.1.1.4
AUTH_CHALLENGE = 334                                               # RFC 4954 §4: text is base64

# --- 4xx: try again later ------------------------------------------------------------------------
SHUTTING_DOWN = Reply(421, "4.3.2", "Service shutting down, try again later")
TOO_MANY_CONNECTIONS = Reply(421, "4.7.0", "Too many connections from your address, try again later")
TIMEOUT = Reply(421, "4.4.2", "Timeout exceeded, closing connection")
TOO_MANY_ERRORS = Reply(421, "4.7.0", "Too many errors, closing connection")
LOCAL_ERROR = Reply(451, "4.3.0", "Local error in processing, try again later")
OUTBOUND_UNAVAILABLE = Reply(451, "4.3.0", "Outbound delivery not available yet, try again later")
INSUFFICIENT_STORAGE = Reply(452, "4.3.1", "Insufficient system storage, try again later")
MAILBOX_FULL = Reply(452, "4.2.2", "Mailbox full, try again later")
TOO_MANY_RECIPIENTS = Reply(452, "4.5.3", "Too many recipients")   # RFC 5321 §4.5.3.1.10
AUTH_BLOCKED = Reply(454, "4.7.0", "Too many authentication failures, try again later")
TLS_UNAVAILABLE = Reply(454, "4.7.0", "TLS not available")

# --- 5xx: permanent ------------------------------------------------------------------------------
LINE_TOO_LONG = Reply(500, "5.5.2", "Line too long")               # RFC 5321 §4.5.3.1.4
SYNTAX_ERROR = Reply(500, "5.5.2", "Syntax error")
BARE_NEWLINE_COMMAND = Reply(500, "5.5.2", "Command lines must end with <CR><LF>")
UNRECOGNIZED = Reply(500, "5.5.1", "Command not recognized")
AUTH_LINE_TOO_LONG = Reply(500, "5.5.6", "Authentication exchange line is too long")  # RFC 4954 §4
BAD_ARGUMENTS = Reply(501, "5.5.4", "Syntax error in parameters or arguments")
BAD_SENDER_SYNTAX = Reply(501, "5.1.7", "Bad sender address syntax")
BAD_RECIPIENT_SYNTAX = Reply(501, "5.1.3", "Bad recipient address syntax")
BAD_BASE64 = Reply(501, "5.5.2", "Cannot decode base64")
AUTH_CANCELLED = Reply(501, "5.0.0", "Authentication cancelled")   # RFC 4954 §4: client sent "*"
NOT_IMPLEMENTED = Reply(502, "5.5.1", "Command not implemented")
BDAT_SYNTAX = Reply(501, "5.5.4", "Syntax: BDAT size [LAST]; closing connection")  # RFC 3030 §2
BAD_SEQUENCE = Reply(503, "5.5.1", "Bad sequence of commands")
ALREADY_TLS = Reply(503, "5.5.1", "TLS already active")
NEED_HELO = Reply(503, "5.5.1", "Send EHLO or HELO first")
NEED_MAIL = Reply(503, "5.5.1", "Need MAIL command")
NEED_RCPT = Reply(503, "5.5.1", "Need RCPT command")
NESTED_MAIL = Reply(503, "5.5.1", "Nested MAIL command")
ALREADY_AUTHENTICATED = Reply(503, "5.5.1", "Already authenticated")
AUTH_MECHANISM_UNKNOWN = Reply(504, "5.5.4", "Unrecognized authentication type")
AUTH_REQUIRED = Reply(530, "5.7.0", "Authentication required")
AUTH_FAILED = Reply(535, "5.7.8", "Authentication credentials invalid")
ENCRYPTION_REQUIRED = Reply(538, "5.7.11", "Encryption required for requested authentication mechanism")
NO_SUCH_USER = Reply(550, "5.1.1", "No such user here")
RELAY_TRICK = Reply(550, "5.7.1", "Source routes, %-hacks and bang paths are not accepted here")
MESSAGE_TOO_BIG = Reply(552, "5.3.4", "Message size exceeds fixed maximum message size")
SENDER_NOT_OWNED = Reply(553, "5.7.1", "Sender address not owned by authenticated user")
UTF8_NOT_DECLARED = Reply(553, "5.6.7", "Non-ASCII address requires SMTPUTF8")  # RFC 6531 §3.5
RELAY_DENIED = Reply(554, "5.7.1", "Relay access denied")
TRANSACTION_FAILED = Reply(554, "5.0.0", "Transaction failed")
DATA_LINE_TOO_LONG = Reply(554, "5.5.2", "Message has a line longer than 1000 octets")  # RFC 5321 §4.5.3.1.6
BARE_NEWLINE = Reply(554, "5.5.2", "Message contains a bare <LF>; lines must end with <CR><LF>")
MAIL_LOOP = Reply(554, "5.4.6", "Too many Received headers: mail loop detected")  # RFC 5321 §6.3
PARAM_NOT_RECOGNIZED = Reply(555, "5.5.4", "MAIL FROM/RCPT TO parameters not recognized or not implemented")
