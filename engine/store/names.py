"""Folder names: IMAP names <-> Maildir++ directory names, and the account directory of an address.

Pure functions, no I/O.  IMAP names reach the store as Unicode text with "/" as the hierarchy separator;
on disk every component is modified UTF-7 (as Dovecot stores it) with "%" and "." escaped as %25 / %2E,
joined by "." and prefixed with "." (Maildir++).  INBOX is the account directory itself.
"""

from __future__ import annotations

import base64
import re
import unicodedata

from engine.interfaces import StoreError

INBOX = "INBOX"
SEPARATOR = "/"
# A Maildir++ folder directory name must fit in one path component (255 octets on common filesystems);
# keep room for the tombstone prefix used while deleting.
MAX_DIRNAME = 200


class InvalidName(StoreError):
    """A folder or account name the store refuses (empty, control characters, escapes the account)."""


# --- modified UTF-7 (RFC 3501 §5.1.3) -------------------------------------------------------------


def encode_mutf7(text: str) -> str:
    """Unicode -> modified UTF-7: printable ASCII stays, "&" becomes "&-", the rest is "&<base64>-"."""
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            raw = "".join(pending).encode("utf-16-be")
            b64 = base64.b64encode(raw).decode("ascii").rstrip("=").replace("/", ",")
            out.append(f"&{b64}-")
            pending.clear()

    for ch in text:
        if 0x20 <= ord(ch) <= 0x7E:
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            pending.append(ch)
    flush()
    return "".join(out)


_MUTF7_SHIFT = re.compile(r"&([A-Za-z0-9+,]*)-")


def decode_mutf7(text: str) -> str:
    """Modified UTF-7 -> Unicode; raises ValueError on anything that is not well-formed."""
    out: list[str] = []
    pos = 0
    while pos < len(text):
        amp = text.find("&", pos)
        if amp < 0:
            out.append(text[pos:])
            break
        out.append(text[pos:amp])
        m = _MUTF7_SHIFT.match(text, amp)
        if m is None:
            raise ValueError(f"bad modified UTF-7 shift at {amp}")
        b64 = m.group(1)
        if not b64:
            out.append("&")
        else:
            raw = base64.b64decode(b64.replace(",", "/") + "=" * (-len(b64) % 4), validate=True)
            if len(raw) % 2:
                raise ValueError("odd-length UTF-16 in modified UTF-7")
            # RFC 3501 §5.1.3: surrogate pairs are legal; "surrogatepass" is not needed for valid pairs.
            out.append(raw.decode("utf-16-be"))
        pos = m.end()
    return "".join(out)


# --- IMAP name validation and canonical form --------------------------------------------------------


def _has_control(text: str) -> bool:
    return any(unicodedata.category(ch) == "Cc" for ch in text)


def normalize_folder(name: str) -> str:
    """The canonical IMAP name, or InvalidName.

    Refuses what could leave the account directory or confuse Maildir++: empty names and components,
    a leading "/", "." or ".." components, control characters (NUL included).  "INBOX" is matched
    case-insensitively as the first component (RFC 3501 §5.1).
    """
    if not isinstance(name, str) or not name:
        raise InvalidName("Mailbox name is empty")
    if _has_control(name):
        raise InvalidName("Mailbox name contains control characters")
    if name.startswith(SEPARATOR):
        raise InvalidName("Mailbox name may not start with the hierarchy separator")
    parts = name.split(SEPARATOR)
    for part in parts:
        if part == "":
            raise InvalidName("Mailbox name has an empty hierarchy level")
        if part in (".", ".."):
            raise InvalidName("Mailbox name may not contain '.' or '..' levels")
    if parts[0].upper() == INBOX:
        parts[0] = INBOX
    canonical = SEPARATOR.join(parts)
    if len(folder_dirname(canonical, _checked=True)) > MAX_DIRNAME:
        raise InvalidName("Mailbox name is too long")
    return canonical


def _escape_component(part: str) -> str:
    return encode_mutf7(part).replace("%", "%25").replace(".", "%2E")


_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")


def _unescape_component(part: str) -> str:
    return decode_mutf7(_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), part))


def folder_dirname(name: str, *, _checked: bool = False) -> str:
    """The Maildir++ directory (relative to the account directory) of a canonical IMAP name; "" for INBOX."""
    if not _checked:
        name = normalize_folder(name)
    if name == INBOX:
        return ""
    return "." + ".".join(_escape_component(p) for p in name.split(SEPARATOR))


def folder_from_dirname(dirname: str) -> str:
    """Inverse of folder_dirname; raises InvalidName for directories that are not our folders."""
    if dirname == "":
        return INBOX
    if not dirname.startswith(".") or dirname in (".", ".."):
        raise InvalidName(f"{dirname!r} is not a Maildir++ folder")
    try:
        parts = [_unescape_component(p) for p in dirname[1:].split(".")]
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidName(f"{dirname!r} is not a well-formed folder name") from exc
    name = SEPARATOR.join(parts)
    canonical = normalize_folder(name)
    if folder_dirname(canonical, _checked=True) != dirname:
        # Two spellings of one name (e.g. ".inbox.x" vs ".INBOX.x", or needless escapes): take only the
        # canonical one so a folder never has two directories.
        raise InvalidName(f"{dirname!r} is not the canonical spelling of {canonical!r}")
    return canonical


def is_descendant(name: str, ancestor: str) -> bool:
    return name.startswith(ancestor + SEPARATOR)


def parents(name: str) -> list[str]:
    """Ancestors of a canonical name, outermost first ("a/b/c" -> ["a", "a/b"])."""
    parts = name.split(SEPARATOR)
    return [SEPARATOR.join(parts[:i]) for i in range(1, len(parts))]


# --- accounts -------------------------------------------------------------------------------------------


def account_parts(address: str) -> tuple[str, str]:
    """(domain, user) directory names of an account address, lower-cased; InvalidName if unsafe."""
    if not isinstance(address, str) or address.count("@") != 1:
        raise InvalidName(f"{address!r} is not an account address (user@domain)")
    user, domain = address.lower().split("@")
    for part in (user, domain):
        if not part or part in (".", "..") or _has_control(part) or "/" in part or "\\" in part:
            raise InvalidName(f"{address!r} is not a usable account address")
    return domain, user
