"""Making untrusted strings from a message safe to show and to use as file names.

A sender controls every byte of a header.  Control characters can hide text or break a layout, and the
Unicode bidi controls (U+202E RIGHT-TO-LEFT OVERRIDE and friends) reorder what is displayed, so that
"invoice<RLO>fdp.exe" looks like "invoiceexe.pdf" and a display name can look like another address.
Everything shown from a message goes through `escape_unsafe`, which replaces such characters with a
visible "[U+202E]"; every attachment name goes through `safe_filename` before it touches the disk.
"""

from __future__ import annotations

import functools
import html
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

# Allowed through even in strict mode: ordinary layout whitespace.
_WHITESPACE_OK = {"\t", " "}
# U+200D ZERO WIDTH JOINER builds emoji sequences in subjects and names; it cannot reorder text.
_LENIENT_FORMAT_OK = {"\u200d"}
_UNSAFE_CATEGORIES = {"Cc", "Cf", "Cs", "Zl", "Zp"}

# Characters no common file system accepts in a name (Windows' set is the widest), plus the separators.
_RESERVED_IN_NAMES = set('<>:"|?*/\\')
# Windows device names: "CON.txt" opens the console, not a file (a name we can fix cheaply everywhere).
_DEVICE_NAMES = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)), *(f"LPT{i}" for i in range(1, 10))}
MAX_NAME_BYTES = 200     # below every common file system's 255, leaving room for " (2)"
FALLBACK_NAME = "attachment"

# Every code point of the categories above (Unicode 14.0, Python 3.11's unicodedata), as ranges, so
# that escaping a 2 MB message source is one regex pass instead of a Python loop; a test checks that it
# still covers unicodedata's view of those categories.
UNSAFE_RANGES: tuple[tuple[int, int], ...] = (
    (0x0000, 0x001F), (0x007F, 0x009F), (0x00AD, 0x00AD), (0x0600, 0x0605), (0x061C, 0x061C),
    (0x06DD, 0x06DD), (0x070F, 0x070F), (0x0890, 0x0891), (0x08E2, 0x08E2), (0x180E, 0x180E),
    (0x200B, 0x200F), (0x2028, 0x202E), (0x2060, 0x2064), (0x2066, 0x206F), (0xD800, 0xDFFF),
    (0xFEFF, 0xFEFF), (0xFFF9, 0xFFFB), (0x110BD, 0x110BD), (0x110CD, 0x110CD), (0x13430, 0x13438),
    (0x1BCA0, 0x1BCA3), (0x1D173, 0x1D17A), (0xE0001, 0xE0001), (0xE0020, 0xE007F),
)

_ADDRESS_IN_TEXT = re.compile(r"[^\s<>\"'(),;:@\[\]]+@[^\s<>\"'(),;:@\[\]]+\.[^\s<>\"'(),;:@\[\]]+")


def is_unsafe_char(ch: str, *, strict: bool = False, keep_newlines: bool = False) -> bool:
    """True for characters that must not reach a label as themselves (see the module docstring)."""
    if ch in _WHITESPACE_OK or (keep_newlines and ch == "\n"):
        return False
    category = unicodedata.category(ch)
    if category not in _UNSAFE_CATEGORIES:
        return False
    return strict or ch not in _LENIENT_FORMAT_OK


@functools.cache
def _unsafe_pattern(strict: bool, keep_newlines: bool) -> re.Pattern[str]:
    allowed = set(_WHITESPACE_OK) | ({"\n"} if keep_newlines else set()) | (set() if strict else _LENIENT_FORMAT_OK)
    parts: list[str] = []
    for low, high in UNSAFE_RANGES:
        start = low
        for cp in range(low, high + 1):
            if chr(cp) in allowed:
                if start < cp:
                    parts.append(f"\\U{start:08x}-\\U{cp - 1:08x}")
                start = cp + 1
        if start <= high:
            parts.append(f"\\U{start:08x}-\\U{high:08x}")
    return re.compile("[" + "".join(parts) + "]")


def escape_unsafe(text: str, *, strict: bool = False, keep_newlines: bool = False) -> str:
    """`text` with control, bidi, zero-width and separator characters shown as "[U+XXXX]".

    `strict` (for addresses and file names) also escapes the zero-width joiner, so two addresses that
    look the same are the same; `keep_newlines` keeps "\\n" for multi-line views (the header block).
    A lone "\\r" before "\\n" is dropped there rather than shown, since CRLF is how mail ends lines.
    """
    if keep_newlines:
        text = text.replace("\r\n", "\n")
    return _unsafe_pattern(strict, keep_newlines).sub(lambda m: f"[U+{ord(m.group(0)):04X}]", text)


def tooltip(text: str) -> str:
    """Text for a Qt tool tip, which renders anything that looks like HTML as rich text: the text is
    escaped and explicitly marked rich, so "<img src=...>" in a subject is shown, never rendered."""
    return "<qt>" + html.escape(text, quote=False).replace("\n", "<br>") + "</qt>"


def one_line(text: str) -> str:
    """A header value for a one-line label: folding whitespace collapsed, then escaped."""
    return escape_unsafe(" ".join(text.replace("\r", " ").replace("\n", " ").split()))


@dataclass(frozen=True)
class ShownAddress:
    """One mailbox from From/To/Cc as it is safe to show."""

    name: str          # display name, escaped ("" when there is none)
    address: str       # addr-spec, escaped strictly
    warning: str       # "" or a sentence saying why the name may mislead

    @property
    def text(self) -> str:
        """'Name <address>' — the real address is always shown, never only the name."""
        if self.name:
            return f"{self.name} <{self.address}>"
        return self.address


def show_address(display_name: str, addr_spec: str) -> ShownAddress:
    """A display name cannot pass itself off as another address: the real address is always part of the
    text, and a name that itself contains a different address gets a warning."""
    name = one_line(display_name)
    address = escape_unsafe(" ".join(addr_spec.split()), strict=True)
    warning = ""
    bare_name = "".join(ch for ch in display_name if not is_unsafe_char(ch, strict=True))
    claimed = {m.group(0).strip(".").lower() for m in _ADDRESS_IN_TEXT.finditer(bare_name)}
    if claimed and claimed != {addr_spec.strip().lower()}:
        warning = (f"The name shows an address ({', '.join(sorted(claimed))}) that is not the one this "
                   f"came from ({address}).")
    elif any(is_unsafe_char(ch) for ch in display_name.replace("\r\n", "")) or \
            any(is_unsafe_char(ch, strict=True) for ch in addr_spec):
        warning = "The name or address contains hidden or direction-changing characters (shown as [U+…])."
    return ShownAddress(name=name, address=address, warning=warning)


def safe_filename(name: str | None, fallback: str = FALLBACK_NAME) -> str:
    """A plain file name for an attachment, never a path: '../../.bashrc' becomes 'bashrc'.

    Drops control/bidi/zero-width characters (so 'x<RLO>fdp.exe' is saved as 'xfdp.exe', its true
    extension visible), keeps only the last path component, replaces characters that file systems
    reserve, strips leading dots (no hidden files, no '..') and trailing dots and spaces (Windows),
    defuses device names, and bounds the length while keeping the extension.
    """
    text = unicodedata.normalize("NFC", name or "")
    text = "".join(ch for ch in text if not is_unsafe_char(ch, strict=True)).replace("\t", " ")
    parts = [p for p in re.split(r"[/\\]", text) if p.strip(" .")]
    text = parts[-1] if parts else ""
    text = "".join("_" if ch in _RESERVED_IN_NAMES else ch for ch in text)
    text = text.strip().lstrip(".").rstrip(" .").strip()
    if not text:
        return fallback
    if text.partition(".")[0].strip().upper() in _DEVICE_NAMES:
        text = "_" + text
    return _bound_length(text)


def _bound_length(name: str) -> str:
    if len(name.encode("utf-8")) <= MAX_NAME_BYTES:
        return name
    stem, dot, ext = name.rpartition(".")
    if not dot or len(ext.encode("utf-8")) > 20:
        stem, ext, dot = name, "", ""
    suffix = f"{dot}{ext}"
    room = MAX_NAME_BYTES - len(suffix.encode("utf-8"))
    cut = stem.encode("utf-8")[:room].decode("utf-8", "ignore").rstrip(" .")
    return (cut or FALLBACK_NAME) + suffix


def unique_path(folder: Path, name: str) -> Path:
    """`folder/name`, or `folder/name (2).ext`, ... when that exists (used when saving several at once)."""
    candidate = folder / name
    if not candidate.exists():
        return candidate
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem:
        stem, dot, ext = name, "", ""
    for n in range(2, 10_000):
        candidate = folder / f"{stem} ({n}){dot}{ext}"
        if not candidate.exists():
            return candidate
    raise FileExistsError(f"too many files named like {name} in {folder}")
