"""Syntax of the names the directory stores: domains, local parts and addresses (pure functions, no I/O).

Admin input is checked strictly (`domain`, `account_local_part`, `remote_address`) so that a typo is
refused with a sentence instead of stored; lookups (`lookup_key`) are lenient and answer None for
anything that cannot name a local mailbox, because a recipient from the network is not an error of ours.
"""

from __future__ import annotations

import re

import idna


class DirectoryError(ValueError):
    """An admin operation that cannot be done; str() is one line a person can act on."""


# RFC 5321 §4.1.2 / RFC 5322 §3.2.3: atext and Dot-string.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_DOT_ATOM = re.compile(rf"{_ATEXT}+(?:\.{_ATEXT}+)*\Z")
# RFC 5321 §4.1.2 Quoted-string: qtextSMTP is %d32-33 / %d35-91 / %d93-126; quoted-pairSMTP is "\" %d32-126.
_QUOTED = re.compile(r'"((?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\[\x20-\x7e])*)"\Z')
_QUOTED_PAIR = re.compile(r"\\([\x20-\x7e])")

MAX_LOCAL_PART = 64        # RFC 5321 §4.5.3.1.1
MAX_DOMAIN = 253           # RFC 5321 §4.5.3.1.2 (255 octets minus the root label's length octets)
SUBADDRESS_SEPARATOR = "+"  # RFC 5233 §1: user+detail


def domain(name: str) -> str:
    """A domain as stored: IDNA 2008 A-labels, lower-case, no trailing dot (RFC 5890 §2.3.2.1).

    U-labels are accepted because a person types `bücher.example`; the protocols carry the A-label form.
    """
    if not isinstance(name, str):
        raise DirectoryError("a domain name must be text")
    text = name.strip()
    if text.endswith("."):
        text = text[:-1]
    if not text:
        raise DirectoryError("a domain name is needed")
    if text.startswith("["):
        raise DirectoryError(f"{name!r} is an address literal, not a domain name")
    try:
        # UTS 46 maps upper case and full-width forms; STD3 rules keep labels to letters, digits, hyphens.
        ascii_name = idna.encode(text, uts46=True, std3_rules=True).decode("ascii").lower()
    except (idna.IDNAError, UnicodeError) as exc:
        raise DirectoryError(f"{name!r} is not a valid domain name ({exc})") from None
    if len(ascii_name) > MAX_DOMAIN:
        raise DirectoryError(f"{name!r} is longer than {MAX_DOMAIN} characters")
    if ascii_name.rsplit(".", 1)[-1].isdigit():
        # RFC 1123 §2.1: a top-level label is never all digits, so this is an IP address, not a name.
        raise DirectoryError(f"{name!r} looks like an IP address, not a domain name")
    return ascii_name


def account_local_part(local: str) -> str:
    """The stored (lower-case) local part of an account or alias source.

    Only a dot-atom (RFC 5321 §4.1.2 Dot-string): quoted local parts are legal but nobody can type them
    into a mail client reliably.  "+" is refused because it separates sub-addresses (RFC 5233), so
    `a+b@d` always means "a, tag b" and can never be shadowed by an account of that name.
    """
    if not local:
        raise DirectoryError("the part before @ is empty")
    if len(local.encode("utf-8")) > MAX_LOCAL_PART:
        raise DirectoryError(f"{local!r} is longer than {MAX_LOCAL_PART} characters")
    if not _DOT_ATOM.match(local):
        raise DirectoryError(
            f"{local!r} may only use letters, digits and !#$%&'*/=?^_`{{|}}~- with single dots between them")
    if SUBADDRESS_SEPARATOR in local:
        raise DirectoryError(f"{local!r} contains '+', which is reserved for sub-addresses (user+tag)")
    return local.lower()


def split(address: str) -> tuple[str, str]:
    """`local@domain` split at the last "@" (a quoted local part may itself contain "@")."""
    if not isinstance(address, str) or "@" not in address:
        raise DirectoryError(f"{address!r} is not an address of the form user@domain")
    local, _, dom = address.strip().rpartition("@")
    return local, dom


def account_address(address: str) -> str:
    """`user@domain` as stored for an account: lower-case local part, A-label domain."""
    local, dom = split(address)
    return f"{account_local_part(local)}@{domain(dom)}"


def alias_source(source: str) -> str:
    """`user@domain`, or `@domain` for the domain's catch-all, as stored."""
    local, dom = split(source)
    if local == "":
        return f"@{domain(dom)}"
    return f"{account_local_part(local)}@{domain(dom)}"


def remote_address(address: str) -> str:
    """A forwarding target: dot-atom local part kept as written (remote servers may treat case as
    significant, RFC 5321 §2.4), domain in A-labels."""
    local, dom = split(address)
    if not local:
        raise DirectoryError(f"{address!r} has nothing before the @")
    if len(local.encode("utf-8")) > MAX_LOCAL_PART:
        raise DirectoryError(f"{local!r} is longer than {MAX_LOCAL_PART} characters")
    if not _DOT_ATOM.match(local):
        raise DirectoryError(f"{address!r} is not an address of the form user@domain")
    return f"{local}@{domain(dom)}"


def unquote_local_part(local: str) -> str | None:
    """The local part with RFC 5321 quoting removed when what is inside is a plain dot-atom.

    `"john.smith"@d` and `john.smith@d` are the same mailbox; a quoted local part that needs its quotes
    cannot name any account here, so it yields None.
    """
    if not local.startswith('"'):
        return local
    m = _QUOTED.match(local)
    if m is None:
        return None
    inner = _QUOTED_PAIR.sub(r"\1", m.group(1))
    return inner if _DOT_ATOM.match(inner) else None


def lookup_key(address: str) -> tuple[str, str] | None:
    """(lower-case local part, A-label domain) of a recipient or login name, or None if it cannot be one.

    Lenient about what arrives from the network: surrounding whitespace and one pair of angle brackets,
    quoted local parts, U-label domains, a trailing dot.
    """
    if not isinstance(address, str):
        return None
    text = address.strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1].strip()
    if "@" not in text:
        return None
    local, _, dom = text.rpartition("@")
    unquoted = unquote_local_part(local)
    if not unquoted or len(unquoted.encode("utf-8", "surrogatepass")) > MAX_LOCAL_PART:
        return None
    try:
        ascii_domain = domain(dom)
    except DirectoryError:
        return None
    return unquoted.lower(), ascii_domain


def base_local_part(local: str) -> str | None:
    """`user` for `user+tag` (RFC 5233 sub-addressing); None when there is no tag or no user."""
    base, sep, _ = local.partition(SUBADDRESS_SEPARATOR)
    return base if sep and base else None
