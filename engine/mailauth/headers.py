"""The header block of a message as raw fields, for reading a few of them and removing some byte-exactly.

The stdlib `email` parser is used to read addresses; it is not used to rewrite the message, because
re-serialising would change bytes that DKIM signatures cover.  Here a message is only cut into its
fields (RFC 5322 §2.2: a field is a line plus its folded continuation lines) and put back together.
"""

from __future__ import annotations

import email.utils
import re
from collections.abc import Iterable
from dataclasses import dataclass

_NAME = re.compile(rb"^([\x21-\x39\x3b-\x7e]+)[ \t]*:")
_COMMENT = re.compile(r"\((?:[^()\\]|\\.)*\)")


@dataclass(frozen=True)
class Field:
    raw: bytes            # the whole field as it arrived, with its CRLFs

    @property
    def name(self) -> str:
        m = _NAME.match(self.raw)
        return m.group(1).decode("ascii").lower() if m else ""

    @property
    def value(self) -> str:
        """Unfolded text after the colon (RFC 5322 §2.2.3), undecodable bytes kept as escapes."""
        _, _, rest = self.raw.partition(b":")
        text = rest.decode("utf-8", "surrogateescape")
        return re.sub(r"\r?\n(?=[ \t])", "", text).strip()


def split_message(data: bytes) -> tuple[list[Field], bytes]:
    """(header fields, everything after them: the blank line and the body)."""
    fields: list[Field] = []
    pos = 0
    end = len(data)
    while pos < end:
        nl = data.find(b"\n", pos)
        line_end = end if nl < 0 else nl + 1
        line = data[pos:line_end]
        if line in (b"\r\n", b"\n"):
            break
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] = Field(fields[-1].raw + line)
        elif _NAME.match(line):
            fields.append(Field(line))
        else:
            break                       # not a header line: the body starts here (no blank line)
        pos = line_end
    return fields, data[pos:]


def join_message(fields: Iterable[Field], rest: bytes) -> bytes:
    return b"".join(f.raw for f in fields) + rest


def values(fields: Iterable[Field], name: str) -> list[str]:
    wanted = name.lower()
    return [f.value for f in fields if f.name == wanted]


def from_domains(fields: Iterable[Field]) -> list[str]:
    """Domains of every address in every From field (RFC 5322 §3.6.2), lower case, in order, each once."""
    found: list[str] = []
    for value in values(fields, "from"):
        for _, address in email.utils.getaddresses([value]):
            domain = address.rpartition("@")[2].strip().rstrip(".").lower() if "@" in address else ""
            if domain and domain not in found:
                found.append(domain)
    return found


def authserv_id(value: str) -> str:
    """The authserv-id an Authentication-Results value starts with (RFC 8601 §2.2), comments removed."""
    text = value
    while True:
        stripped = _COMMENT.sub(" ", text)
        if stripped == text:
            break
        text = stripped
    head = text.split(";", 1)[0].split()
    return head[0].strip('"').lower() if head else ""


def remove_results_for(fields: list[Field], hostname: str) -> tuple[list[Field], int]:
    """Drops every Authentication-Results field that claims to come from `hostname` (RFC 8601 §5):
    anyone can write one, and readers trust ours.  Returns the fields kept and how many went."""
    ours = hostname.lower().rstrip(".")
    kept = [f for f in fields
            if not (f.name == "authentication-results" and authserv_id(f.value) == ours)]
    return kept, len(fields) - len(kept)


def fold(name: str, parts: list[str]) -> bytes:
    """`Name: part1;\\r\\n\\tpart2;...` — one clause per line keeps lines short (RFC 5322 §2.1.1)."""
    body = ";\r\n\t".join(parts)
    return f"{name}: {body}\r\n".encode("utf-8", "surrogateescape")
