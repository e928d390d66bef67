"""SEARCH program evaluation (RFC 3501 §6.4.4, RFC 7162 MODSEQ, RFC 5032 OLDER/YOUNGER).

Pure over what it is given: the message list as the session sees it and a function that loads one
message's bytes (the session runs the whole evaluation in a worker thread, since text keys read files).
Cheap keys (flags, numbers, dates, sizes) are tried before keys that need the message, so a search like
`UNSEEN BODY foo` opens only the unseen messages.
"""

from __future__ import annotations

import calendar
import email.utils
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from engine.imap import mime
from engine.imap.parser import SearchKey, SeqSet
from engine.interfaces import MessageMeta

_COST_META = 0
_COST_HEADER = 1
_COST_BODY = 2
_HEADER_KEYS = frozenset({"FROM", "TO", "CC", "BCC", "SUBJECT", "HEADER", "SENTBEFORE", "SENTON",
                          "SENTSINCE"})
_DAY = 86400
_ENCODED_MARKERS = (b"base64", b"quoted-printable", b"=?", b"utf-16", b"utf-32", b"utf-7")


@dataclass(frozen=True)
class Candidate:
    seq: int
    meta: MessageMeta
    recent: bool


def cost(key: SearchKey) -> int:
    """How much of a message a key needs: 0 index only, 1 header, 2 body."""
    if key.op in _HEADER_KEYS:
        return _COST_HEADER
    if key.op in ("BODY", "TEXT"):
        return _COST_BODY
    return max((cost(k) for k in key.children), default=_COST_META)


class _Message:
    """One message during evaluation; loads and parses its bytes at most once, only if a key needs them."""

    def __init__(self, cand: Candidate, load: Callable[[int], bytes]) -> None:
        self.cand = cand
        self._load = load
        self._data: bytes | None = None
        self._headers: list[tuple[str, str]] | None = None
        self._header_text: str | None = None
        self._body: list[str] | None = None
        self._lower: bytes | None = None

    @property
    def data(self) -> bytes:
        if self._data is None:
            try:
                self._data = self._load(self.cand.meta.uid)
            except Exception:     # expunged under us, unreadable file: it matches no text key
                self._data = b""
        return self._data

    def headers(self) -> list[tuple[str, str]]:
        if self._headers is None:
            data = self.data
            end = mime.header_end(data, 0, len(data))
            block = data[:end]
            out: list[tuple[str, str]] = []
            name = ""
            value: list[bytes] = []
            for line in block.split(b"\n"):
                line = line.rstrip(b"\r")
                if line[:1] in (b" ", b"\t") and name:
                    value.append(line)
                    continue
                if name:
                    out.append((name, mime.decode_header_value(b"".join(value).strip())))
                    name = ""
                colon = line.find(b":")
                if colon > 0:
                    name = line[:colon].strip().decode("latin-1").lower()
                    value = [line[colon + 1:]]
            if name:
                out.append((name, mime.decode_header_value(b"".join(value).strip())))
            self._headers = out
        return self._headers

    def cannot_contain(self, needle: str) -> bool:
        """True when the raw octets prove the decoded text cannot contain an ASCII `needle`: nothing in
        the message is transfer- or header-encoded or in a wide charset, so decoded text is a subset of
        the raw text.  Saves parsing MIME for the (usual) messages that do not match."""
        if not needle.isascii():
            return False
        if self._lower is None:
            self._lower = self.data.lower()
        low = self._lower
        if any(marker in low for marker in _ENCODED_MARKERS):
            return False
        return needle.lower().encode("ascii") not in low

    def header_values(self, name: str) -> Iterable[str]:
        name = name.lower()
        return (v for n, v in self.headers() if n == name)

    def address_values(self, name: str) -> list[str]:
        """Each address in the header as `local@domain` (with the display name before it in `<>`):
        RFC 3501 §6.4.4 matches FROM/TO/CC/BCC against the envelope's addresses, which a comment or a
        folded line can split in the header's text ("user (dept) @ example.org")."""
        out: list[str] = []
        for value in self.header_values(name):
            for display, _route, mbox, host in mime.parse_addresses(value.encode("utf-8", "surrogateescape")):
                if not mbox:
                    continue
                addr = mbox if host in (None, mime.MISSING_DOMAIN) else mbox + b"@" + host
                text = addr.decode("utf-8", "replace")
                out.append(f"{display.decode('utf-8', 'replace')} <{text}>" if display else text)
        return out

    def header_text(self) -> str:
        if self._header_text is None:
            self._header_text = "\n".join(f"{n}: {v}" for n, v in self.headers())
        return self._header_text

    def body(self) -> list[str]:
        if self._body is None:
            # The top-level header is not body text; headers of attached messages are (RFC 3501 §6.4.4).
            self._body = list(mime.body_texts(self.data))
        return self._body


def _contains(haystack: str, needle: str) -> bool:
    return needle.casefold() in haystack.casefold()


def _sent_date(msg: _Message) -> float | None:
    """The Date: header's calendar day (its own time zone disregarded, RFC 3501 §6.4.4) at 00:00 UTC."""
    for value in msg.header_values("date"):
        parsed = email.utils.parsedate_tz(value)
        if parsed is None:
            return None
        y, mo, d = parsed[0], parsed[1], parsed[2]
        try:
            return float(calendar.timegm((y, mo, d, 0, 0, 0, 0, 0, 0)))
        except (ValueError, OverflowError):
            return None
    return None


def _day(ts: float) -> float:
    return float(int(ts // _DAY) * _DAY)


class Evaluator:
    """Matches one search program against messages; `saved` is the SEARCHRES result (RFC 5182)."""

    def __init__(self, key: SearchKey, *, total: int, max_uid: int, saved: Sequence[int] = (),
                 now: float | None = None) -> None:
        self.key = _order(key)
        self.total = total
        self.max_uid = max_uid
        self.saved = frozenset(saved)
        self.now = time.time() if now is None else now

    def matches(self, cand: Candidate, load: Callable[[int], bytes]) -> bool:
        return self._match(self.key, _Message(cand, load))

    def judge_without_message(self, cand: Candidate) -> bool | None:
        """The verdict from index data alone, or None when a header or body key must decide."""
        return self._judge(self.key, cand)

    def _judge(self, key: SearchKey, cand: Candidate) -> bool | None:
        if cost(key) == _COST_META:
            return self._match(key, _Message(cand, _no_load))
        if key.op == "AND":
            unknown = False
            for k in key.children:
                v = self._judge(k, cand)
                if v is False:
                    return False
                unknown = unknown or v is None
            return None if unknown else True
        if key.op == "OR":
            unknown = False
            for k in key.children:
                v = self._judge(k, cand)
                if v is True:
                    return True
                unknown = unknown or v is None
            return None if unknown else False
        if key.op == "NOT":
            v = self._judge(key.children[0], cand)
            return None if v is None else not v
        return None

    def _match(self, key: SearchKey, m: _Message) -> bool:
        op = key.op
        meta = m.cand.meta
        if op == "ALL":
            return True
        if op == "AND":
            return all(self._match(k, m) for k in key.children)
        if op == "OR":
            return any(self._match(k, m) for k in key.children)
        if op == "NOT":
            return not self._match(key.children[0], m)
        if op in ("FLAG", "NOTFLAG"):
            flag: str = key.args[0]
            if flag == "\\Recent":
                have = m.cand.recent
            else:
                folded = flag.casefold()
                have = any(f.casefold() == folded for f in meta.flags)
            return have if op == "FLAG" else not have
        if op == "SEQ":
            seqs: SeqSet = key.args[0]
            if seqs.saved:
                return meta.uid in self.saved
            return seqs.contains(m.cand.seq, self.total)
        if op == "UID":
            uids: SeqSet = key.args[0]
            if uids.saved:
                return meta.uid in self.saved
            return uids.contains(meta.uid, self.max_uid)
        if op in ("LARGER", "SMALLER", "MODSEQ", "OLDER", "YOUNGER"):
            n = int(key.args[0])
            if op == "LARGER":
                return meta.size > n
            if op == "SMALLER":
                return meta.size < n
            if op == "MODSEQ":
                return meta.modseq >= n
            if op == "OLDER":
                return meta.internaldate <= self.now - n
            return meta.internaldate >= self.now - n
        if op in ("BEFORE", "ON", "SINCE"):
            return _compare_day(op, _day(meta.internaldate), float(key.args[0]))
        if op in ("SENTBEFORE", "SENTON", "SENTSINCE"):
            sent = _sent_date(m)
            return sent is not None and _compare_day(op[4:], sent, key.args[0])
        if op == "SUBJECT":
            return any(_contains(v, key.args[0]) for v in m.header_values("subject"))
        if op in ("FROM", "TO", "CC", "BCC"):
            # the text first (cheap, and what most searches hit), then the parsed addresses
            return any(_contains(v, key.args[0]) for v in m.header_values(op.lower())) or any(
                _contains(v, key.args[0]) for v in m.address_values(op.lower()))
        if op == "HEADER":
            name, value = key.args
            return any(_contains(v, value) for v in m.header_values(name)) if value else any(
                True for _ in m.header_values(name))
        if op == "BODY":
            if m.cannot_contain(key.args[0]):
                return False
            return any(_contains(t, key.args[0]) for t in m.body())
        if op == "TEXT":
            if m.cannot_contain(key.args[0]):
                return False
            return _contains(m.header_text(), key.args[0]) or any(_contains(t, key.args[0]) for t in m.body())
        raise ValueError(f"unknown search key {op}")


def _no_load(uid: int) -> bytes:
    raise AssertionError("index-only keys never load a message")


def _compare_day(op: str, day: float, wanted: float) -> bool:
    if op == "BEFORE":
        return day < wanted
    if op == "ON":
        return day == wanted
    return day >= wanted


def _order(key: SearchKey) -> SearchKey:
    """Cheap children first in AND and OR, so text keys run only where they can still matter."""
    children = [_order(k) for k in key.children]
    if key.op in ("AND", "OR"):
        children.sort(key=cost)
    return SearchKey(key.op, key.args, children)


def needs_message(key: SearchKey) -> bool:
    return cost(key) > _COST_META


def run(key: SearchKey, candidates: Sequence[Candidate], load: Callable[[int], bytes], *,
        max_uid: int, saved: Sequence[int] = ()) -> list[Candidate]:
    """All candidates the program matches, in order (blocking when text keys must read files).

    First every candidate is judged on index data alone (three-valued: a text key is "unknown"); only
    the undecided ones are opened, and a loader with `prefetch` is told which, in order, first."""
    ev = Evaluator(key, total=len(candidates), max_uid=max_uid, saved=saved)
    verdicts: list[bool | None] = [ev.judge_without_message(c) for c in candidates]
    undecided = [c for c, v in zip(candidates, verdicts, strict=True) if v is None]
    prefetch: Any = getattr(load, "prefetch", None)
    if undecided and prefetch is not None:
        prefetch([c.meta.uid for c in undecided])
    out: list[Candidate] = []
    for c, v in zip(candidates, verdicts, strict=True):
        if v is None:
            v = ev.matches(c, load)
        if v:
            out.append(c)
    return out
