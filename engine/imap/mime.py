"""MIME structure over raw message bytes: ENVELOPE, BODYSTRUCTURE, section extraction, decoded text.

The structure is found iteratively with offsets into the original bytes (nothing is copied or re-encoded),
so hostile messages cannot exhaust the stack: nesting is capped at MAX_DEPTH levels (as Dovecot does, a part
deeper than that is served as an opaque leaf) and the part count at MAX_PARTS (the rest of a multipart then
stays in its last part).  Output follows RFC 3501 §7.4.2; section numbering follows RFC 3501 §6.4.5.
"""

from __future__ import annotations

import base64
import binascii
import email.errors
import email.header
import quopri
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from engine.imap import response as R

MAX_DEPTH = 100
MAX_PARTS = 10000
MAX_ADDRESSES = 5000

_HEADER_END = re.compile(rb"\r?\n\r?\n")


@dataclass
class Part:
    """One entity: `start`..`body_start` is its header block (with the blank line), then its body."""

    start: int
    body_start: int
    end: int
    maintype: str = "text"
    subtype: str = "plain"
    params: list[tuple[bytes, bytes]] = field(default_factory=list)
    headers: dict[str, bytes] = field(default_factory=dict)    # first occurrence, unfolded, lower-case names
    children: list[Part] = field(default_factory=list)        # multipart
    message: Part | None = None                               # message/rfc822: the embedded message
    opaque: bool = False                                      # over a cap: not looked into

    @property
    def multipart(self) -> bool:
        return self.maintype == "multipart" and not self.opaque

    def param(self, name: bytes) -> bytes | None:
        for k, v in self.params:
            if k.lower() == name:
                return v
        return None


def header_end(data: bytes, start: int, end: int) -> int:
    """Offset of the body: just past the blank line that ends the header block (or `end`)."""
    if data.startswith(b"\r\n", start) and start + 2 <= end:
        return start + 2
    if data.startswith(b"\n", start) and start + 1 <= end:
        return start + 1
    m = _HEADER_END.search(data, start, end)
    return m.end() if m else end


_WANTED_RE = re.compile(
    rb"^(content-type|content-transfer-encoding|content-id|content-description|content-md5|"
    rb"content-disposition|content-language|content-location|date|subject|from|sender|reply-to|to|cc|bcc|"
    rb"in-reply-to|message-id)[ \t]*:", re.IGNORECASE | re.MULTILINE)
_FOLD_END = re.compile(rb"\n(?![ \t])")


def parse_header_block(block: bytes) -> dict[str, bytes]:
    """First occurrence of each field ENVELOPE and BODYSTRUCTURE use, unfolded (RFC 5322 §2.2.3), value
    without surrounding blanks.  The scan runs in the regex engine, so 100,000 header lines cost little."""
    out: dict[str, bytes] = {}
    for m in _WANTED_RE.finditer(block):
        name = m.group(1).decode("ascii").lower()
        if name in out:
            continue
        end_m = _FOLD_END.search(block, m.end())
        raw = block[m.end():end_m.start() if end_m else len(block)]
        out[name] = raw.replace(b"\r\n", b"").replace(b"\n", b"").replace(b"\r", b"").strip(b" \t")
        if len(out) == 18:
            break
    return out


# --- RFC 2045 Content-Type and parameters ---------------------------------------------------------

_TOKEN = re.compile(rb"[^\x00-\x20()<>@,;:\\\"/\[\]?=\x7f]+")


def _skip_cfws(value: bytes, i: int) -> int:
    n = len(value)
    while i < n:
        c = value[i]
        if c in (0x20, 0x09, 0x0D, 0x0A):
            i += 1
        elif c == 0x28:  # comment, possibly nested
            depth = 0
            while i < n:
                c = value[i]
                if c == 0x5C:
                    i += 2
                    continue
                if c == 0x28:
                    depth += 1
                elif c == 0x29:
                    depth -= 1
                    if depth == 0:
                        i += 1
                        break
                i += 1
        else:
            break
    return i


def _quoted_string(value: bytes, i: int) -> tuple[bytes, int]:
    out = bytearray()
    i += 1
    n = len(value)
    while i < n:
        c = value[i]
        if c == 0x5C and i + 1 < n:
            out.append(value[i + 1])
            i += 2
            continue
        if c == 0x22:
            return bytes(out), i + 1
        out.append(c)
        i += 1
    return bytes(out), i


def parse_params(value: bytes, i: int) -> list[tuple[bytes, bytes]]:
    """`; name=value` pairs after a media type or disposition, values unquoted (RFC 2045 §5.1)."""
    params: list[tuple[bytes, bytes]] = []
    n = len(value)
    while i < n and len(params) < 100:
        i = _skip_cfws(value, i)
        if i >= n:
            break
        if value[i] != 0x3B:
            # junk: skip to the next ";"
            j = value.find(b";", i)
            if j < 0:
                break
            i = j
        i = _skip_cfws(value, i + 1)
        m = _TOKEN.match(value, i)
        if not m:
            continue
        name = m.group(0)
        i = _skip_cfws(value, m.end())
        if i >= n or value[i] != 0x3D:
            continue
        i = _skip_cfws(value, i + 1)
        if i < n and value[i] == 0x22:
            val, i = _quoted_string(value, i)
        else:
            m = _TOKEN.match(value, i)
            val = m.group(0) if m else b""
            i = m.end() if m else i
        params.append((name, val))
    return params


def parse_content_type(value: bytes | None) -> tuple[str, str, list[tuple[bytes, bytes]]] | None:
    if value is None:
        return None
    if len(value) <= 256:
        hit = _CT_MEMO.get(value)
        if hit is None:
            hit = _parse_content_type(value)
            if len(_CT_MEMO) < 2048:
                _CT_MEMO[value] = hit
        return None if hit is None else (hit[0], hit[1], list(hit[2]))
    return _parse_content_type(value)


_CT_MEMO: dict[bytes, tuple[str, str, list[tuple[bytes, bytes]]] | None] = {}


def _parse_content_type(value: bytes) -> tuple[str, str, list[tuple[bytes, bytes]]] | None:
    i = _skip_cfws(value, 0)
    m = _TOKEN.match(value, i)
    if not m:
        return None
    i = _skip_cfws(value, m.end())
    if i >= len(value) or value[i] != 0x2F:
        return None
    i = _skip_cfws(value, i + 1)
    m2 = _TOKEN.match(value, i)
    if not m2:
        return None
    return (m.group(0).decode("ascii", "replace").lower(), m2.group(0).decode("ascii", "replace").lower(),
            parse_params(value, m2.end()))


# --- structure -------------------------------------------------------------------------------------

def _boundary_positions(data: bytes, start: int, end: int, boundary: bytes) -> list[tuple[int, int, bool]]:
    """(delimiter start, start of the part after it, is-close) for each delimiter line (RFC 2046 §5.1.1)."""
    delim = b"--" + boundary
    found: list[tuple[int, int, bool]] = []
    pos = start
    # a delimiter may open the body without a preceding CRLF
    candidates_at_start = data.startswith(delim, start) and start + len(delim) <= end
    while True:
        if candidates_at_start:
            at, line_start = start, start
            candidates_at_start = False
        else:
            at = data.find(b"\n" + delim, pos, end)
            if at < 0:
                return found
            line_start = at + 1
            if at > start and data[at - 1] == 0x0D:
                at -= 1
        p = line_start + len(delim)
        close = data.startswith(b"--", p)
        if close:
            p += 2
        # transport padding, then the line end
        eol = data.find(b"\n", p, end)
        rest = data[p:eol if eol >= 0 else end]
        pos = line_start + len(delim)
        if rest.strip(b" \t\r"):
            continue        # "--boundaryX" is not our delimiter
        after = eol + 1 if eol >= 0 else end
        found.append((at, after, close))
        if close or len(found) > MAX_PARTS:
            return found
        pos = after - 1 if after > 0 else after


def parse_structure(data: bytes) -> Part:
    """The MIME tree of a whole message, built with an explicit work list (no recursion)."""
    root = Part(0, header_end(data, 0, len(data)), len(data))
    work: list[tuple[Part, int, bool]] = [(root, 0, False)]   # (part, depth, in multipart/digest)
    count = 1
    while work:
        part, depth, digest = work.pop()
        part.headers = parse_header_block(data[part.start:part.body_start])
        ctype = parse_content_type(part.headers.get("content-type"))
        if ctype is None:
            # RFC 2045 §5.2 default, or message/rfc822 inside multipart/digest (RFC 2046 §5.1.5)
            if digest:
                part.maintype, part.subtype = "message", "rfc822"
            else:
                part.params = [(b"charset", b"us-ascii")]
        else:
            part.maintype, part.subtype, part.params = ctype
            if part.maintype == "text" and part.param(b"charset") is None:
                part.params.append((b"charset", b"us-ascii"))     # RFC 2045 §5.2 default, made explicit
        if depth >= MAX_DEPTH or count >= MAX_PARTS:
            if part.maintype == "multipart" or (part.maintype, part.subtype) in _MESSAGE_TYPES:
                part.opaque = True
            continue
        if part.maintype == "multipart":
            boundary = part.param(b"boundary")
            delims = _boundary_positions(data, part.body_start, part.end, boundary) if boundary else []
            for i, (_at, after, close) in enumerate(delims):
                if close:
                    break
                nxt = delims[i + 1][0] if i + 1 < len(delims) else part.end
                count += 1
                if count >= MAX_PARTS:
                    nxt = part.end          # over the cap: the rest stays in this last part
                part.children.append(Part(after, header_end(data, after, nxt), nxt))
                if count >= MAX_PARTS:
                    break
            if not part.children:
                # RFC 3501 needs at least one body: an empty text part stands in.
                part.children.append(Part(part.body_start, part.body_start, part.body_start,
                                          params=[(b"charset", b"us-ascii")]))
                continue
            for child in reversed(part.children):
                work.append((child, depth + 1, part.subtype == "digest"))
        elif (part.maintype, part.subtype) in _MESSAGE_TYPES:
            inner = Part(part.body_start, header_end(data, part.body_start, part.end), part.end)
            part.message = inner
            count += 1
            work.append((inner, depth + 1, False))
    return root


_MESSAGE_TYPES = frozenset({("message", "rfc822"), ("message", "global")})


# --- ENVELOPE --------------------------------------------------------------------------------------

_SPECIALS = b'()<>[]:;@\\,."'


def _comment(value: bytes, i: int) -> tuple[bytes, int]:
    """The text of the (possibly nested) comment starting at value[i] == "(", and where it ends."""
    out = bytearray()
    depth = 0
    n = len(value)
    while i < n:
        c = value[i]
        if c == 0x5C and i + 1 < n:
            out.append(value[i + 1])
            i += 2
            continue
        if c == 0x28:
            depth += 1
            if depth == 1:
                i += 1
                continue
        elif c == 0x29:
            depth -= 1
            if depth == 0:
                return bytes(out), i + 1
        out.append(c)
        i += 1
    return bytes(out), i


def _tokens(value: bytes) -> Iterator[tuple[str, bytes]]:
    """RFC 5322 lexical tokens: ("atom"|"quoted"|"literal"|"special"|"comment", text); space dropped."""
    i = 0
    n = len(value)
    while i < n:
        while i < n and value[i] in (0x20, 0x09, 0x0D, 0x0A):
            i += 1
        if i >= n:
            return
        c = value[i]
        if c == 0x28:
            text, i = _comment(value, i)
            yield "comment", text
        elif c == 0x22:
            text, i = _quoted_string(value, i)
            yield "quoted", text
        elif c == 0x5B:
            j = value.find(b"]", i)
            j = n if j < 0 else j + 1
            yield "literal", value[i:j]
            i = j
        elif c in _SPECIALS:
            yield "special", bytes([c])
            i += 1
        else:
            j = i
            while j < n and value[j] not in _SPECIALS and value[j] not in b" \t\r\n":
                j += 1
            yield "atom", value[i:j]
            i = j


Address = tuple[bytes | None, bytes | None, bytes | None, bytes | None]
# RFC 3501 §7.4.2 reserves a NIL host for group syntax, so an address without a domain ("To: root") gets
# this placeholder instead (Dovecot's, which clients already know).
MISSING_DOMAIN = b"MISSING_DOMAIN"


def parse_addresses(value: bytes) -> list[Address]:
    """An address-list as IMAP address structures (name adl mailbox host), groups per RFC 3501 §7.4.2."""
    out: list[Address] = []
    in_group = False
    tokens = list(_tokens(value))
    i = 0
    n = len(tokens)

    def addr_spec(words: list[tuple[str, bytes]]) -> tuple[bytes | None, bytes | None]:
        at = None
        for k in range(len(words) - 1, -1, -1):
            if words[k] == ("special", b"@"):
                at = k
                break
        if at is None:
            local = b"".join(t for _, t in words)
            return (local or None), (MISSING_DOMAIN if local else None)
        local = b"".join(t for _, t in words[:at])
        host = b"".join(t for _, t in words[at + 1:])
        return (local or None), (host or MISSING_DOMAIN)

    item: list[tuple[str, bytes]] = []
    comment: bytes | None = None        # "user@domain (Real Name)": the comment names a bare addr-spec
    while i < n and len(out) < MAX_ADDRESSES:
        kind, text = tokens[i]
        if kind == "comment":
            comment = b" ".join(text.split())
            i += 1
            continue
        if kind == "special" and text == b"<":
            j = i + 1
            inner: list[tuple[str, bytes]] = []
            while j < n and tokens[j] != ("special", b">"):
                if tokens[j][0] != "comment":
                    inner.append(tokens[j])
                j += 1
            route: bytes | None = None
            colon = next((k for k, t in enumerate(inner) if t == ("special", b":")), None)
            if colon is not None:
                route = b"".join(t for _, t in inner[:colon]) or None
                inner = inner[colon + 1:]
            mbox, host = addr_spec(inner)
            name = b" ".join(t for k, t in item if k != "special" or t == b".") if item else None
            out.append((name or None, route, mbox, host))
            item = []
            comment = None
            i = j + 1
            # skip to the next separator
            while i < n and tokens[i] not in (("special", b","), ("special", b";")):
                i += 1
            continue
        if kind == "special" and text == b":" and not in_group:
            out.append((None, None, b" ".join(t for _, t in item) or None, None))
            in_group = True
            item = []
            comment = None
            i += 1
            continue
        if kind == "special" and text in (b",", b";"):
            if item:
                mbox, host = addr_spec(item)
                if mbox or host:
                    out.append((comment or None, None, mbox, host))
                item = []
            comment = None
            if text == b";" and in_group:
                out.append((None, None, None, None))
                in_group = False
            i += 1
            continue
        item.append((kind, text))
        i += 1
    if item:
        mbox, host = addr_spec(item)
        if mbox or host:
            out.append((comment or None, None, mbox, host))
    if in_group:
        out.append((None, None, None, None))
    return out


def _addresses(value: bytes | None) -> bytes:
    if value is None:
        return R.NIL
    addrs = parse_addresses(value)
    if not addrs:
        return R.NIL
    return b"(" + b"".join(b"(" + b" ".join(R.nstring(x) for x in a) + b")" for a in addrs) + b")"


def envelope(headers: dict[str, bytes]) -> bytes:
    """RFC 3501 §7.4.2 ENVELOPE from a part's header fields."""
    from_ = headers.get("from")
    from_list = _addresses(from_)
    # RFC 3501 §7.4.2: Sender and Reply-To take the From value when absent *or present but empty*.
    sender = _addresses(headers.get("sender"))
    reply_to = _addresses(headers.get("reply-to"))
    fields = [
        R.nstring(headers.get("date")),
        R.nstring(headers.get("subject")),
        from_list,
        from_list if sender == R.NIL else sender,
        from_list if reply_to == R.NIL else reply_to,
        _addresses(headers.get("to")),
        _addresses(headers.get("cc")),
        _addresses(headers.get("bcc")),
        R.nstring(headers.get("in-reply-to")),
        R.nstring(headers.get("message-id")),
    ]
    return b"(" + b" ".join(fields) + b")"


def message_envelope(data: bytes) -> bytes:
    end = header_end(data, 0, len(data))
    return envelope(parse_header_block(data[:end]))


# --- BODYSTRUCTURE ---------------------------------------------------------------------------------

def _params(params: list[tuple[bytes, bytes]]) -> bytes:
    if not params:
        return R.NIL
    return b"(" + b" ".join(R.string(k.lower()) + b" " + R.string(v) for k, v in params) + b")"


def _lines(data: bytes, start: int, end: int) -> int:
    """body-fld-lines: line ends in the body (as Dovecot counts; a last line without one is not counted)."""
    return data.count(b"\n", start, end) if end > start else 0


def _disposition(part: Part) -> bytes:
    raw = part.headers.get("content-disposition")
    if raw is None:
        return R.NIL
    i = _skip_cfws(raw, 0)
    m = _TOKEN.match(raw, i)
    if not m:
        return R.NIL
    return b"(" + R.string(m.group(0).lower()) + b" " + _params(parse_params(raw, m.end())) + b")"


def _language(part: Part) -> bytes:
    raw = part.headers.get("content-language")
    if raw is None:
        return R.NIL
    langs = [t for k, t in _tokens(raw) if k == "atom"]
    if not langs:
        return R.NIL
    if len(langs) == 1:
        return R.string(langs[0])
    return b"(" + b" ".join(R.string(x) for x in langs) + b")"


def _fields(data: bytes, part: Part) -> bytes:
    cte = part.headers.get("content-transfer-encoding")
    enc = cte.strip().lower() if cte else b"7bit"
    return b" ".join((
        _params(part.params),
        R.nstring(part.headers.get("content-id")),
        R.nstring(part.headers.get("content-description")),
        R.string(enc),
        str(part.end - part.body_start).encode(),
    ))


def bodystructure(data: bytes, root: Part | None = None, extended: bool = True) -> bytes:
    """BODYSTRUCTURE (extended) or BODY (not) for a message, assembled without recursion."""
    root = root or parse_structure(data)
    out: list[bytes] = []
    # work items: a Part to open, or bytes to emit once its children are done
    work: list[Part | bytes] = [root]
    while work:
        item = work.pop()
        if isinstance(item, bytes):
            out.append(item)
            continue
        part = item
        if part.multipart:
            tail = b" " + R.string(part.subtype.encode())
            if extended:
                tail += b" " + b" ".join((_params(part.params), _disposition(part), _language(part),
                                          R.nstring(part.headers.get("content-location"))))
            work.append(tail + b")")
            for child in reversed(part.children):
                work.append(child)
            out.append(b"(")
            continue
        maintype, subtype = (part.maintype, part.subtype)
        if part.opaque and maintype == "multipart":
            maintype, subtype = "application", "octet-stream"
        head = b"(" + R.string(maintype.encode()) + b" " + R.string(subtype.encode()) + b" " + _fields(data, part)
        ext = b""
        if extended:
            ext = b" " + b" ".join((R.nstring(part.headers.get("content-md5")), _disposition(part),
                                    _language(part), R.nstring(part.headers.get("content-location"))))
        lines = str(_lines(data, part.body_start, part.end)).encode()
        if part.message is not None:
            inner = part.message
            work.append(b" " + lines + ext + b")")
            work.append(inner)
            out.append(head + b" " + envelope(inner.headers) + b" ")
        elif maintype == "text":
            out.append(head + b" " + lines + ext + b")")
        else:
            out.append(head + ext + b")")
    return b"".join(out)


# --- sections (RFC 3501 §6.4.5) ----------------------------------------------------------------------

class SectionMissing(LookupError):
    """The section names a part the message does not have: served as an empty string."""


def _find_part(root: Part, path: tuple[int, ...]) -> tuple[Part, bool]:
    """The part a section-part names, and whether it is a whole message standing for its own body."""
    cur = root
    is_message = True       # cur is a message (root or embedded), not a body part
    for n in path:
        if not is_message and cur.message is not None:
            cur = cur.message
            is_message = True
        if cur.multipart:
            if n > len(cur.children):
                raise SectionMissing
            cur = cur.children[n - 1]
            is_message = False
        elif n == 1:
            # part 1 of a single-part message is its body; part 1 of a single body part is that part
            # again (as Dovecot answers BODY[1.1] of a text part, rather than an empty string)
            is_message = False
        else:
            raise SectionMissing
    return cur, is_message


def header_fields(block: bytes, names: tuple[str, ...], exclude: bool) -> bytes:
    """HEADER.FIELDS / HEADER.FIELDS.NOT over a header block: the matching lines, then the blank line."""
    wanted = {n.lower().encode("ascii") for n in names}
    out: list[bytes] = []
    keep = False
    for line in block.splitlines(keepends=True):
        if line in (b"\r\n", b"\n"):
            break
        if line[:1] in (b" ", b"\t"):
            if keep:
                out.append(line)
            continue
        colon = line.find(b":")
        name = line[:colon].strip().lower() if colon > 0 else b""
        keep = (name in wanted) != exclude and colon > 0
        if keep:
            out.append(line if line.endswith(b"\n") else line + b"\r\n")
    out.append(b"\r\n")
    return b"".join(out)


def section(data: bytes, path: tuple[int, ...], text: str | None, fields: tuple[str, ...] = (),
            root: Part | None = None) -> bytes:
    """The octets of BODY[section] (without partial)."""
    if not path and text is None:
        return data
    if not path and text in ("HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT"):
        body = header_end(data, 0, len(data))
        return _message_text(data, 0, body, len(data), text, fields)
    root = root or parse_structure(data)
    try:
        part, is_message = _find_part(root, path)
    except SectionMissing:
        return b""
    if text is None:
        if is_message:
            return data[part.start:part.end]
        return data[part.body_start:part.end]
    if text == "MIME":
        if is_message or part is root:
            return data[part.start:part.body_start]
        return data[part.start:part.body_start]
    inner = part if is_message else part.message
    if inner is None:
        return b""
    return _message_text(data, inner.start, inner.body_start, inner.end, text, fields)


def _message_text(data: bytes, start: int, body: int, end: int, text: str, fields: tuple[str, ...]) -> bytes:
    if text == "TEXT":
        return data[body:end]
    block = data[start:body]
    if text == "HEADER":
        return block if block.endswith(b"\n") or not block else block + b"\r\n"
    return header_fields(block, fields, exclude=text == "HEADER.FIELDS.NOT")


class UnknownEncoding(ValueError):
    """A Content-Transfer-Encoding BINARY cannot undo (RFC 3516 §4.3: NO [UNKNOWN-CTE])."""


def decode_transfer(body: bytes, cte: bytes | None) -> bytes:
    enc = (cte or b"7bit").strip().lower()
    if enc in (b"7bit", b"8bit", b"binary", b""):
        return body
    if enc == b"base64":
        try:
            return base64.b64decode(re.sub(rb"[^A-Za-z0-9+/]", b"", body) + b"===")
        except (binascii.Error, ValueError):
            return base64.b64decode(re.sub(rb"[^A-Za-z0-9+/]", b"", body)[: len(body) // 4 * 4] or b"")
    if enc == b"quoted-printable":
        return quopri.decodestring(body)
    raise UnknownEncoding(enc.decode("ascii", "replace"))


def binary_section(data: bytes, path: tuple[int, ...], root: Part | None = None) -> bytes:
    """BINARY[section] (RFC 3516): the part's body with its transfer encoding undone."""
    if not path:
        return data
    root = root or parse_structure(data)
    try:
        part, is_message = _find_part(root, path)
    except SectionMissing:
        return b""
    if part.multipart or is_message:
        return data[part.start if is_message else part.body_start:part.end]
    return decode_transfer(data[part.body_start:part.end], part.headers.get("content-transfer-encoding"))


# --- decoded text for SEARCH -------------------------------------------------------------------------

def decode_header_value(raw: bytes) -> str:
    """RFC 2047 encoded words decoded; undecodable octets kept as best we can."""
    text = raw.decode("utf-8", "replace")
    if "=?" not in text:
        return text
    try:
        return str(email.header.make_header(email.header.decode_header(text)))
    except (LookupError, ValueError, UnicodeError, email.errors.HeaderParseError):
        return text


def _charset_decode(body: bytes, charset: bytes | None) -> str:
    name = (charset or b"utf-8").decode("ascii", "replace").strip() or "utf-8"
    try:
        return body.decode(name, "replace")
    except LookupError:
        return body.decode("utf-8", "replace")


def body_texts(data: bytes, root: Part | None = None, limit: int = 8 * 1024 * 1024) -> Iterator[str]:
    """The decoded text of every text/* leaf (and message headers), for BODY/TEXT search."""
    root = root or parse_structure(data)
    work = [root]
    budget = limit
    while work and budget > 0:
        part = work.pop()
        if part.multipart:
            work.extend(reversed(part.children))
            continue
        if part.message is not None:
            inner = part.message
            yield decode_header_value(data[inner.start:inner.body_start])
            work.append(inner)
            continue
        if part.maintype != "text" or part.opaque:
            continue
        raw = data[part.body_start:min(part.end, part.body_start + budget)]
        budget -= len(raw)
        try:
            decoded = decode_transfer(raw, part.headers.get("content-transfer-encoding"))
        except UnknownEncoding:
            decoded = raw
        text = _charset_decode(decoded, part.param(b"charset"))
        if part.subtype == "html":
            text = re.sub(r"<[^>]{0,2000}>", " ", text)
        yield text

