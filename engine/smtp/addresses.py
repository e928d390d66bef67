"""Parsing the arguments of MAIL FROM and RCPT TO: paths, mailboxes and ESMTP parameters.

Pure functions over the command argument (text decoded from the wire as UTF-8 with surrogateescape, so a
byte that is not UTF-8 survives as a lone surrogate and is refused here).  The grammar is RFC 5321 §4.1.2
with RFC 6531 §3.3's UTF-8 extensions; each error carries the reply the server should send.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

from engine.smtp import codes
from engine.smtp.codes import Reply

# RFC 5321 §4.5.3.1.3: a path is at most 256 octets including the angle brackets.
MAX_MAILBOX = 254
MAX_DOMAIN = 255           # RFC 5321 §4.5.3.1.2
MAX_LABEL = 63             # RFC 1035 §2.3.4

# RFC 5322 §3.2.3 atext; RFC 6531 §3.3 adds UTF8-non-ascii.
_ATEXT = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-/=?^_`{|}~")
_LDH = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-")
_KEYWORD = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*$")        # RFC 5321 §4.1.2 esmtp-keyword

# The common case of the grammar below in single regex matches: an ASCII Dot-string, and a path
# `<dot-string@ldh.domain>` followed by the end or a space (RFC 5321 §4.1.2).  What they do not match
# (quoting, source routes, UTF-8, address literals, paths without brackets) takes the full grammar.
_ATOM = r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]+"
_ASCII_DOT_STRING = re.compile(rf"{_ATOM}(?:\.{_ATOM})*")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"       # RFC 1035 §2.3.1, at most 63 octets
_SIMPLE_PATH = re.compile(rf"<({_ATOM}(?:\.{_ATOM})*)@({_LABEL}(?:\.{_LABEL})*)>(?= |\Z)")


class AddressError(ValueError):
    """A path or parameter that does not parse; `reply` is what the server answers."""

    def __init__(self, reply: Reply, detail: str = "") -> None:
        super().__init__(detail or reply.text)
        self.reply = reply.with_text(detail) if detail else reply


def _is_utf8_char(ch: str) -> bool:
    """Non-ASCII that came from valid UTF-8 (surrogateescape turns invalid bytes into U+DC80..U+DCFF)."""
    return ord(ch) > 127 and not 0xDC80 <= ord(ch) <= 0xDCFF


def _is_atext(ch: str) -> bool:
    return ch in _ATEXT or _is_utf8_char(ch)


def _is_dot_string(text: str) -> bool:
    """RFC 5321 §4.1.2 Dot-string = Atom *("." Atom)."""
    if not text:
        return False
    if _ASCII_DOT_STRING.fullmatch(text):
        return True
    return all(atom and all(_is_atext(c) for c in atom) for atom in text.split("."))


@dataclass(frozen=True)
class Address:
    """A mailbox: the local part as the mailbox owner knows it (quoting removed) and the domain."""

    local: str
    domain: str            # lower-case; "" only for the special recipient <Postmaster> (RFC 5321 §4.1.1.3)

    def __str__(self) -> str:
        local = self.local if _is_dot_string(self.local) else _quote(self.local)
        return f"{local}@{self.domain}" if self.domain else local

    @property
    def plain(self) -> str:
        """`local@domain` without quoting: the key a directory looks the address up by."""
        return f"{self.local}@{self.domain}" if self.domain else self.local

    @property
    def needs_utf8(self) -> bool:
        return not (self.local.isascii() and self.domain.isascii())


def _quote(local: str) -> str:
    escaped = local.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


@dataclass(frozen=True)
class Path:
    """A reverse- or forward-path.  `address` is None for the null reverse-path `<>`."""

    address: Address | None
    route: tuple[str, ...] = ()   # source-route domains: accepted and ignored (RFC 5321 §4.1.1.3, App. C)


@dataclass(frozen=True)
class PathArgument:
    """What follows `MAIL FROM:` or `RCPT TO:`: the path and its ESMTP parameters (keywords upper-case)."""

    path: Path
    params: dict[str, str | None] = field(default_factory=dict)


def relay_trick(address: Address) -> str | None:
    """Names the old relay trick an address uses, or None.

    Mailers once routed `user%other@here` and `other!user@here` onwards to `other`, and a quoted `@`
    (`"user@other"@here`) confuses naive parsers the same way; an MX that takes any of these for a local
    domain can be turned into an open relay by whatever it later hands the address to.
    """
    if "%" in address.local:
        return "percent hack"
    if "!" in address.local:
        return "bang path"
    if "@" in address.local:
        return "quoted @ in local part"
    return None


def parse_domain(text: str) -> str:
    """RFC 5321 §4.1.2 Domain (with RFC 6531 U-labels) or address-literal; returned lower-case."""
    if not text:
        raise ValueError("empty domain")
    if len(text.encode("utf-8", "surrogateescape")) > MAX_DOMAIN:
        raise ValueError("domain too long")
    if text.startswith("["):
        return _parse_address_literal(text)
    for label in text.split("."):
        if not label or len(label.encode("utf-8", "surrogateescape")) > MAX_LABEL:
            raise ValueError(f"bad domain label in {text!r}")
        if label.startswith("-") or label.endswith("-"):
            raise ValueError(f"domain label {label!r} starts or ends with a hyphen")
        if not all(c in _LDH or _is_utf8_char(c) for c in label):
            raise ValueError(f"bad character in domain {text!r}")
    return text.lower()


def _parse_address_literal(text: str) -> str:
    """RFC 5321 §4.1.3: [IPv4], [IPv6:...] or [tag:content]."""
    if not text.endswith("]") or len(text) < 3:
        raise ValueError(f"bad address literal {text!r}")
    inner = text[1:-1]
    if inner[:5].lower() == "ipv6:":
        try:
            ipaddress.IPv6Address(inner[5:])
        except ValueError:
            raise ValueError(f"bad IPv6 address literal {text!r}") from None
        return text.lower()
    if ":" in inner:
        tag, _, content = inner.partition(":")
        # General-address-literal: Standardized-tag ":" 1*dcontent (printable ASCII except [ \ ])
        if not _KEYWORD.match(tag) or not content or not all(33 <= ord(c) <= 126 and c not in "[\\]"
                                                              for c in content):
            raise ValueError(f"bad address literal {text!r}")
        return text.lower()
    try:
        ipaddress.IPv4Address(inner)
    except ValueError:
        raise ValueError(f"bad IPv4 address literal {text!r}") from None
    return text


def _parse_local(text: str) -> str:
    """Local-part = Dot-string / Quoted-string; returns the unquoted value."""
    if text.startswith('"'):
        if len(text) < 2 or not text.endswith('"'):
            raise ValueError("unterminated quoted local part")
        out: list[str] = []
        body = text[1:-1]
        i = 0
        while i < len(body):
            ch = body[i]
            if ch == "\\":
                # quoted-pairSMTP = %d92 %d32-126
                if i + 1 >= len(body) or not 32 <= ord(body[i + 1]) <= 126:
                    raise ValueError("bad quoted pair in local part")
                out.append(body[i + 1])
                i += 2
                continue
            # qtextSMTP = %d32-33 / %d35-91 / %d93-126 / UTF8-non-ascii
            if ch == '"' or not (32 <= ord(ch) <= 126 or _is_utf8_char(ch)):
                raise ValueError("bad character in quoted local part")
            out.append(ch)
            i += 1
        return "".join(out)
    if not _is_dot_string(text):
        raise ValueError(f"bad local part {text!r}")
    return text


def parse_mailbox(text: str, *, allow_postmaster: bool = False) -> Address:
    """RFC 5321 §4.1.2 Mailbox = Local-part "@" ( Domain / address-literal )."""
    if len(text.encode("utf-8", "surrogateescape")) > MAX_MAILBOX:
        raise ValueError("address too long")
    if any(0xDC80 <= ord(c) <= 0xDCFF for c in text):
        raise ValueError("address is not valid UTF-8")
    at = _last_unquoted_at(text)
    if at < 0:
        # RFC 5321 §4.1.1.3: "<Postmaster>" without a domain MUST be accepted as a recipient.
        if allow_postmaster and text.lower() == "postmaster":
            return Address("postmaster", "")
        raise ValueError(f"{text!r} has no domain")
    local = _parse_local(text[:at])
    domain = parse_domain(text[at + 1:])
    return Address(local, domain)


def _last_unquoted_at(text: str) -> int:
    quoted = False
    escaped = False
    last = -1
    for i, ch in enumerate(text):
        if escaped:
            escaped = False
        elif ch == "\\" and quoted:
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch == "@" and not quoted:
            last = i
    return last


def _split_path(text: str) -> tuple[str, str, bool]:
    """Splits `<path> params` (or a bare `addr params`) into (path text, rest, had angle brackets)."""
    angle = text.startswith("<")
    i = 1 if angle else 0
    quoted = False
    escaped = False
    while i < len(text):
        ch = text[i]
        if escaped:
            escaped = False
        elif quoted and ch == "\\":
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif not quoted and ((angle and ch == ">") or (not angle and ch == " ")):
            break
        i += 1
    if angle:
        if i >= len(text):
            raise ValueError("missing '>'")
        return text[1:i], text[i + 1:], True
    return text[:i], text[i:], False


def _parse_path(text: str, *, allow_null: bool, allow_postmaster: bool) -> tuple[Path, str]:
    simple = _SIMPLE_PATH.match(text)
    if simple is not None:
        local, domain = simple.group(1, 2)
        if len(local) + 1 + len(domain) <= MAX_MAILBOX and len(domain) <= MAX_DOMAIN:
            return Path(Address(local, domain.lower())), text[simple.end():]
    return _parse_path_grammar(text, allow_null=allow_null, allow_postmaster=allow_postmaster)


def _parse_path_grammar(text: str, *, allow_null: bool, allow_postmaster: bool) -> tuple[Path, str]:
    """`_parse_path` by the full grammar, character by character."""
    path_text, rest, angle = _split_path(text)
    if rest and not rest.startswith(" "):
        raise ValueError("expected a space between the path and its parameters")
    if path_text == "":
        if not angle or not allow_null:
            raise ValueError("empty path")
        return Path(None), rest
    route: tuple[str, ...] = ()
    if path_text.startswith("@"):
        # A-d-l ":" Mailbox (RFC 5321 §4.1.2); the route is ignored (§4.1.1.3, Appendix C).
        adl, colon, mailbox_text = path_text.partition(":")
        if not colon:
            raise ValueError("source route without ':'")
        hops = []
        for hop in adl.split(","):
            if not hop.startswith("@"):
                raise ValueError("bad source route")
            hops.append(parse_domain(hop[1:]))
        route = tuple(hops)
        path_text = mailbox_text
    return Path(parse_mailbox(path_text, allow_postmaster=allow_postmaster), route), rest


def parse_params(text: str) -> dict[str, str | None]:
    """RFC 5321 §4.1.2 Mail-parameters: `KEY[=value]` separated by spaces; keywords upper-cased.

    esmtp-value is printable ASCII except "=" (RFC 5321), plus UTF-8 (RFC 6531 §3.3).
    """
    params: dict[str, str | None] = {}
    for item in text.split():
        key, eq, value = item.partition("=")
        if not _KEYWORD.match(key):
            raise ValueError(f"bad parameter {item!r}")
        if eq and (not value or not all((33 <= ord(c) <= 126 and c != "=") or _is_utf8_char(c)
                                        for c in value)):
            raise ValueError(f"bad parameter value in {item!r}")
        key = key.upper()
        if key in params:
            raise ValueError(f"parameter {key} given twice")
        params[key] = value if eq else None
    return params


def _strip_keyword(arg: str, keyword: str) -> str | None:
    if arg[:len(keyword)].upper() != keyword:
        return None
    # Many clients write "MAIL FROM: <a@b>"; RFC 5321 forbids the space but Postfix and Exim accept it.
    return arg[len(keyword):].lstrip(" ")


def parse_mail_from(arg: str) -> PathArgument:
    """The argument of MAIL: `FROM:<reverse-path> [params]` (RFC 5321 §4.1.1.2)."""
    rest = _strip_keyword(arg, "FROM:")
    if rest is None:
        raise AddressError(codes.BAD_ARGUMENTS, "Syntax: MAIL FROM:<address> [parameters]")
    try:
        path, params_text = _parse_path(rest, allow_null=True, allow_postmaster=False)
    except ValueError as exc:
        raise AddressError(codes.BAD_SENDER_SYNTAX, f"Bad sender address syntax: {exc}") from None
    try:
        params = parse_params(params_text)
    except ValueError as exc:
        raise AddressError(codes.BAD_ARGUMENTS, str(exc)) from None
    return PathArgument(path, params)


def parse_rcpt_to(arg: str) -> PathArgument:
    """The argument of RCPT: `TO:<forward-path> [params]` (RFC 5321 §4.1.1.3)."""
    rest = _strip_keyword(arg, "TO:")
    if rest is None:
        raise AddressError(codes.BAD_ARGUMENTS, "Syntax: RCPT TO:<address> [parameters]")
    try:
        path, params_text = _parse_path(rest, allow_null=False, allow_postmaster=True)
    except ValueError as exc:
        raise AddressError(codes.BAD_RECIPIENT_SYNTAX, f"Bad recipient address syntax: {exc}") from None
    try:
        params = parse_params(params_text)
    except ValueError as exc:
        raise AddressError(codes.BAD_ARGUMENTS, str(exc)) from None
    return PathArgument(path, params)
