"""The HTML sanitiser, the content security policy, and plain text made clickable."""

from __future__ import annotations

from desktop.viewer.html import content_security_policy, is_remote, linkify_text, sanitize_html

PART = "postroom-msg:/token/part/"


def part_url(cid: str) -> str | None:
    return PART + "7" if cid == "logo@shop.test" else None


def body(html: str) -> str:
    doc = sanitize_html(html, part_url).document
    return doc.split("<body>", 1)[1].rsplit("</body>", 1)[0]


def test_scripts_event_handlers_and_javascript_urls_are_removed() -> None:
    out = body("<p onclick='x()' onmouseover=y>hi</p><script>document.title='x'</script>"
               "<a href='javascript:alert(1)'>j</a><img src=x onerror=alert(1)>")
    assert "script" not in out and "onclick" not in out and "onerror" not in out
    assert "javascript" not in out and "alert" not in out
    assert "<p>hi</p>" in out


def test_frames_forms_meta_refresh_and_base_are_removed() -> None:
    out = body("<meta http-equiv=refresh content='0;url=http://evil/'><base href='http://evil/'>"
               "<iframe src='http://evil/'></iframe><form action='http://evil/'><input name=p></form>"
               "<object data='http://evil/x.swf'></object><embed src='http://evil/'><svg><image href='http://e/'/></svg>")
    assert "evil" not in out and "<meta" not in out and "<base" not in out and "<form" not in out


def test_remote_resources_are_listed_but_links_are_not() -> None:
    safe = sanitize_html(
        "<style>body{background:url('http://a.test/bg.png')} @import 'https://b.test/x.css';</style>"
        "<p style='background-image:url(//c.test/p.gif)'>x</p><img src='http://d.test/pixel.gif'>"
        "<table background='https://e.test/t.png'><tr><td>x</td></tr></table>"
        "<a href='https://f.test/click'>link</a>", part_url)
    assert set(safe.remote) == {"http://a.test/bg.png", "https://b.test/x.css", "//c.test/p.gif",
                                "http://d.test/pixel.gif", "https://e.test/t.png"}
    assert 'href="https://f.test/click"' in safe.document


def test_cid_references_point_at_our_parts_and_unknown_ones_vanish() -> None:
    out = body("<img src='cid:logo@shop.test'><img src='cid:missing@x'><p style='background:url(cid:logo@shop.test)'>")
    assert f'src="{PART}7"' in out
    assert "missing" not in out
    assert f"url('{PART}7')" in out


def test_message_cannot_refer_to_our_own_scheme_directly() -> None:
    assert "postroom-msg" not in body("<img src='postroom-msg:/other/part/1'>")


def test_policy_forbids_scripts_and_remote_loads_unless_allowed() -> None:
    strict = content_security_policy(False)
    assert "script-src 'none'" in strict and "http:" not in strict
    assert "img-src postroom-msg: data: http: https:" in content_security_policy(True)
    assert "Content-Security-Policy" in sanitize_html("<p>x</p>").document


def test_remote_detection() -> None:
    assert is_remote("HTTP://x") and is_remote("//x/y") and is_remote(" https://x")
    assert not is_remote("cid:x") and not is_remote("data:image/png;base64,AA") and not is_remote("#top")


def test_plain_text_links_are_clickable_and_markup_is_escaped() -> None:
    html = linkify_text("see https://example.org/a?b=1&c=2. and <b>not bold</b> www.example.com\u202e")
    assert '<a href="https://example.org/a?b=1&amp;c=2">https://example.org/a?b=1&amp;c=2</a>.' in html
    assert "&lt;b&gt;not bold&lt;/b&gt;" in html
    assert '<a href="http://www.example.com">www.example.com</a>[U+202E]' in html


def test_link_text_cannot_break_out_of_its_attribute() -> None:
    html = linkify_text('https://x.test/"onmouseover=alert(1)')
    assert 'href="https://x.test/"' in html and "onmouseover" not in html.split(">", 1)[0]


from html.parser import HTMLParser  # noqa: E402

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_PIECES = st.sampled_from(["<script>", "</script>", "<img src=", "http://e.test/x", "cid:logo@shop.test",
                           "onerror=", "javascript:", "<style>", "</style>", "url(", ")", "'", '"', ">", "<",
                           "<iframe", "<svg", "<!--", "-->", "<a href=", "<base href=", "&", " ", "x"])


class _Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs += [(k, v or "") for k, v in attrs]


@settings(max_examples=300, deadline=None)
@given(st.lists(_PIECES, max_size=40).map("".join))
def test_no_script_or_handler_survives_any_mixture(html: str) -> None:
    found = _Elements()
    found.feed(sanitize_html(html, part_url).document.split("<body>", 1)[1])
    assert not {"script", "iframe", "base", "svg", "meta"} & set(found.tags)
    assert not [k for k, _ in found.attrs if k.startswith("on")]
    assert not [v for k, v in found.attrs if k in ("href", "src") and v.strip().lower().startswith("javascript")]
    assert not [v for k, v in found.attrs if k == "src" and v.startswith("cid:")]
