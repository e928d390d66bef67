"""HTML mail made safe to show: an allow-list sanitiser, a Content-Security-Policy, and plain text as HTML.

Three layers, so one mistake is not enough: the sanitiser (nh3, i.e. the Ammonia library, whose HTML
parser is the same html5ever algorithm browsers follow) drops scripts, event handlers, forms, frames,
<meta refresh> and <base>; the document's CSP forbids scripts and every load except our own
`postroom-msg:` parts and data: URLs; and the web view runs with JavaScript off behind a request
interceptor that blocks every other URL (desktop.viewer.webview).  The sanitiser also lists the remote
resources the message refers to, so the reading view can say what it blocked.
"""

from __future__ import annotations

import html as htmllib
import re
from collections.abc import Callable
from dataclasses import dataclass

import nh3

from desktop.viewer.text import escape_unsafe

SCHEME = "postroom-msg"      # our URL scheme: the message document and its parts

_GENERIC_ATTRS = {"style", "class", "align", "valign", "bgcolor", "width", "height", "border", "dir", "lang",
                  "title", "color", "background", "nowrap", "cellpadding", "cellspacing", "hspace", "vspace",
                  "colspan", "rowspan", "role", "name", "id"}
_TAG_ATTRS = {
    "a": {"href"},
    "img": {"src", "alt"},
    "font": {"face", "size"},
    "ol": {"start", "type"},
    "ul": {"type"},
    "li": {"value"},
    "blockquote": {"cite", "type"},
    "td": {"headers", "scope"},
    "th": {"headers", "scope"},
    "col": {"span"},
    "colgroup": {"span"},
}
_EXTRA_TAGS = {"style", "font", "center", "tfoot", "big", "span", "section", "main", "address", "u", "label"}
TAGS = set(nh3.ALLOWED_TAGS) | _EXTRA_TAGS
ATTRIBUTES = {tag: set(attrs) for tag, attrs in nh3.ALLOWED_ATTRIBUTES.items()}
for _tag, _attrs in _TAG_ATTRS.items():
    ATTRIBUTES[_tag] = ATTRIBUTES.get(_tag, set()) | _attrs
ATTRIBUTES["*"] = ATTRIBUTES.get("*", set()) | _GENERIC_ATTRS
# Tags removed together with their content (the others, if not allowed, lose only the tag).
CLEAN_CONTENT_TAGS = {"script", "title", "noscript", "template", "iframe", "object", "embed", "textarea",
                      "select", "option", "button", "svg", "math", "audio", "video", "canvas", "applet"}
URL_SCHEMES = {"http", "https", "mailto", "cid", "data"}
# Attributes whose URL the browser loads by itself (as opposed to links a person clicks).
_RESOURCE_ATTRS = {"src", "background", "poster"}
_LINK_SCHEMES = ("http:", "https:", "mailto:")

_CSS_URL = re.compile(r"""url\(\s*(?:"([^"]*)"|'([^']*)'|([^)'"\s]*))\s*\)""", re.IGNORECASE)
_CSS_IMPORT = re.compile(r"""@import\s+(?:"([^"]*)"|'([^']*)')""", re.IGNORECASE)
_STYLE_BLOCK = re.compile(r"(<style\b[^>]*>)(.*?)(</style>)", re.IGNORECASE | re.DOTALL)
_URL_IN_TEXT = re.compile(r"""(?:https?://|www\.)[^\s<>"'\[\]]+|mailto:[^\s<>"'\[\]]+""", re.IGNORECASE)

BASE_STYLE = ("html{color-scheme:light}"
              "body{margin:12px;font-family:sans-serif;overflow-wrap:anywhere;background:#fff;color:#111}"
              "img{max-width:100%;height:auto}pre{white-space:pre-wrap}")

PartUrl = Callable[[str], "str | None"]


@dataclass(frozen=True)
class SafeHtml:
    document: str                 # a whole HTML document, ready to serve
    remote: tuple[str, ...]       # remote resources it refers to (loaded only if the person allows)


def is_remote(url: str) -> bool:
    """Would loading `url` leave this machine?  (http, https, and scheme-relative //host/...)."""
    u = url.strip().lower()
    return u.startswith(("http:", "https:", "//", "ftp:", "ws:", "wss:"))


def content_security_policy(allow_remote: bool) -> str:
    """No scripts, no frames, no forms, no plugins; images, styles and fonts only from the message
    itself unless the person allowed remote content for it."""
    remote = " http: https:" if allow_remote else ""
    own = f"{SCHEME}: data:"
    return (f"default-src 'none'; script-src 'none'; object-src 'none'; frame-src 'none'; "
            f"form-action 'none'; base-uri 'none'; img-src {own}{remote}; "
            f"style-src 'unsafe-inline' {own}{remote}; font-src {own}{remote}; media-src 'none'; "
            f"connect-src 'none'")


def _rewrite_css(css: str, part_url: PartUrl, remote: list[str]) -> str:
    """Notes remote url()/@import targets and points url(cid:...) at the part it names."""
    def url(m: re.Match[str]) -> str:
        target = next(g for g in m.groups() if g is not None)
        if is_remote(target):
            remote.append(target.strip())
        elif target.strip().lower().startswith("cid:"):
            local = part_url(target.strip()[4:])
            return f"url('{local}')" if local else "url('')"
        return m.group(0)

    def imports(m: re.Match[str]) -> str:
        target = next(g for g in m.groups() if g is not None)
        if is_remote(target):
            remote.append(target.strip())
        return m.group(0)

    return _CSS_IMPORT.sub(imports, _CSS_URL.sub(url, css))


def sanitize_html(source: str, part_url: PartUrl | None = None, *, allow_remote: bool = False) -> SafeHtml:
    """The message's HTML as a safe document for the web view (see the module docstring).

    `part_url(content_id)` maps a cid: reference (RFC 2392) to the URL serving that part, or None when
    the message has no such part.
    """
    resolve: PartUrl = part_url or (lambda _cid: None)
    remote: list[str] = []

    def attribute(tag: str, attr: str, value: str) -> str | None:
        v = value.strip()
        low = v.lower()
        if attr == "style":
            return _rewrite_css(value, resolve, remote)
        if attr == "href":
            # Links are followed only by a click, and only to the web or a mail address.
            return v if low.startswith(_LINK_SCHEMES) or low.startswith("#") else None
        if attr in _RESOURCE_ATTRS:
            if low.startswith("cid:"):
                return resolve(v[4:])
            if is_remote(v):
                remote.append(v)
                return v
            if low.startswith("data:image/"):
                return v
            return None
        return value

    cleaned = nh3.clean(
        source,
        tags=TAGS,
        clean_content_tags=CLEAN_CONTENT_TAGS,
        attributes=ATTRIBUTES,
        attribute_filter=attribute,
        url_schemes=URL_SCHEMES,
        strip_comments=True,
        link_rel="noopener noreferrer",
    )
    cleaned = _STYLE_BLOCK.sub(lambda m: m.group(1) + _rewrite_css(m.group(2), resolve, remote) + m.group(3),
                               cleaned)
    seen: dict[str, None] = {}
    for url in remote:
        seen.setdefault(url, None)
    policy = htmllib.escape(content_security_policy(allow_remote), quote=True)
    document = ("<!DOCTYPE html><html><head><meta charset=\"utf-8\">"
                f"<meta http-equiv=\"Content-Security-Policy\" content=\"{policy}\">"
                "<meta name=\"referrer\" content=\"no-referrer\">"
                f"<style>{BASE_STYLE}</style></head><body>{cleaned}</body></html>")
    return SafeHtml(document=document, remote=tuple(seen))


def linkify_text(text: str) -> str:
    """Plain text as HTML for a text view: escaped (controls and bidi shown as [U+…]), URLs clickable."""
    shown = escape_unsafe(text, keep_newlines=True)
    out: list[str] = []
    last = 0
    for m in _URL_IN_TEXT.finditer(shown):
        url = m.group(0).rstrip(".,;:!?)'\"")
        end = m.start() + len(url)
        out.append(htmllib.escape(shown[last:m.start()]))
        href = url if not url.lower().startswith("www.") else "http://" + url
        out.append(f'<a href="{htmllib.escape(href, quote=True)}">{htmllib.escape(url)}</a>')
        last = end
    out.append(htmllib.escape(shown[last:]))
    return "".join(out)


def text_document(text: str) -> str:
    """A plain-text body as a small HTML document for QTextBrowser (which never loads remote images)."""
    return ('<html><body><div style="white-space: pre-wrap; font-family: monospace;">'
            f"{linkify_text(text)}</div></body></html>")
