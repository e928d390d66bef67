"""Reading a message: decoded headers, the body to show, attachments, inline parts, bounces and checks."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import viewer_samples as samples

from desktop.viewer.message import parse, part_content, read_message


def test_encoded_words_and_quoted_printable_are_decoded() -> None:
    view = read_message(samples.plain_text())
    assert view.subject == "Grüße aus Köln — ein Test"
    assert [a.text for a in view.sender] == ["Carol Example <carol@remote.test>"]
    assert [a.text for a in view.to] == ["alice@example.test"]
    assert view.text is not None and "Viele Grüße" in view.text
    assert view.html is None
    assert view.attachments == ()
    assert view.timestamp is not None and view.date
    assert view.sender_key == "carol@remote.test"


def test_iso_8859_1_headers_and_body() -> None:
    view = read_message(samples.latin1())
    assert view.subject == "Café crème"
    assert view.sender[0].name == "François Pérez"
    assert view.text == "Un café crème, s'il vous plaît.\n"


def test_koi8_r_base64_body() -> None:
    view = read_message(samples.koi8r())
    assert view.subject == "Привет"
    assert view.text is not None and "Привет, Алиса! Как дела?" in view.text


def test_html_alternative_is_chosen_and_the_cid_image_is_inline() -> None:
    view = read_message(samples.newsletter("http://127.0.0.1:9/img.png"))
    assert view.html is not None and "cid:logo@shop.test" in view.html
    assert view.text == "Plain version of the newsletter.\n"
    (logo,) = view.attachments
    assert logo.inline and logo.content_type == "image/png"
    assert view.cids == {"logo@shop.test": logo.part}
    data, ctype = part_content(parse(samples.newsletter("x")), logo.part)
    assert (data, ctype) == (samples.PNG, "image/png")


def test_attachments_are_listed_with_safe_names_and_exact_bytes() -> None:
    raw = samples.with_attachments()
    view = read_message(raw)
    names = [(a.name, a.save_name, a.content_type) for a in view.attachments]
    assert names == [
        ("report.pdf", "report.pdf", "application/pdf"),
        ("../../.bashrc", "bashrc", "application/octet-stream"),
        ("invoice[U+202E]fdp.exe", "invoicefdp.exe", "application/octet-stream"),
    ]
    pdf = view.attachments[0]
    assert pdf.size == len(samples.PDF)
    assert part_content(parse(raw), pdf.part) == (samples.PDF, "application/pdf")


def test_spoofing_display_name_and_bidi_subject_are_visible() -> None:
    view = read_message(samples.spoofing())
    assert view.sender[0].text == "support@bank.test <attacker@evil.test>"
    assert view.warnings and "attacker@evil.test" in view.warnings[0]
    assert "[U+202E]" in view.subject


def test_results_from_another_authserv_id_are_ignored() -> None:
    assert read_message(samples.spoofing(), authserv_id="mx.example.test").auth == ()


def test_own_authentication_results_in_words() -> None:
    view = read_message(samples.authenticated("mx.example.test"), authserv_id="mx.example.test")
    assert [(v.method, v.result, v.good) for v in view.auth] == [
        ("SPF", "pass", True), ("DKIM", "fail", False), ("DMARC", "fail", False)]
    assert "signature did not verify" in view.auth[1].words


def test_a_bounce_names_the_failed_recipient_and_why() -> None:
    view = read_message(samples.bounce())
    assert view.dsn is not None
    assert [r.recipient for r in view.dsn.failed] == ["nobody@remote.test"]
    assert "User unknown" in view.dsn.failed[0].reason
    assert "mailbox does not exist" in view.dsn.failed[0].reason
    assert view.dsn.headline == "Delivery failed to nobody@remote.test (your message “Lunch on Friday?”)"
    assert view.text is not None and "could not be delivered" in view.text


def test_full_header_block_is_kept_for_show_all_headers() -> None:
    view = read_message(samples.latin1())
    assert view.headers.startswith("From: =?iso-8859-1?q?Fran=E7ois_P=E9rez?=")
    assert "Content-Transfer-Encoding: quoted-printable" in view.headers
    assert "\r" not in view.headers


def test_broken_input_never_raises() -> None:
    for raw in (b"", b"\x00\xff\xfe", b"Subject: =?bogus?q?x?=\r\n\r\nbody",
                b"Content-Type: text/plain; charset=no-such-charset\r\n\r\n\xe9t\xe9",
                b"Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\nContent-Type: text/html\r\n\r\n<b>",
                b"From: <<<@@@>>>\r\nDate: yesterday\r\nTo: ,,,\r\n\r\nhi"):
        view = read_message(raw)
        assert isinstance(view.subject, str)


def test_a_single_part_pdf_is_an_attachment() -> None:
    import base64

    raw = (b"From: a@b.test\r\nSubject: scan\r\nContent-Type: application/pdf; name=scan.pdf\r\n"
           b"Content-Transfer-Encoding: base64\r\n\r\n" + base64.encodebytes(samples.PDF))
    view = read_message(raw)
    assert view.text is None and view.html is None
    assert [(a.save_name, a.size) for a in view.attachments] == [("scan.pdf", len(samples.PDF))]


from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_HEADERS = st.sampled_from([b"From: ", b"To: ", b"Cc: ", b"Subject: ", b"Date: ", b"Content-Type: ",
                            b"Content-Transfer-Encoding: ", b"Content-Disposition: ", b"Message-ID: "])
_VALUES = st.one_of(st.binary(max_size=80), st.sampled_from([
    b"multipart/mixed; boundary=b", b"multipart/alternative; boundary=b", b"text/html; charset=bogus",
    b"base64", b"quoted-printable", b"attachment; filename*=utf-8''%2E%2E%2Fx", b"=?utf-8?b?////?=",
    b"message/rfc822", b"multipart/report; report-type=delivery-status; boundary=b"]))


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.lists(st.tuples(_HEADERS, _VALUES), max_size=8), st.binary(max_size=400))
def test_any_bytes_read_without_raising(headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    raw = b"".join(name + value.replace(b"\n", b" ") + b"\r\n" for name, value in headers) + b"\r\n" + body
    raw += b"\r\n--b\r\nContent-Type: text/plain\r\n\r\nx\r\n--b--\r\n"
    view = read_message(raw, authserv_id="mx.example.test")
    for text in (view.subject, view.date, *(a.text for a in view.sender), *(a.name for a in view.attachments)):
        assert "\x00" not in text and "\u202e" not in text
    for attachment in view.attachments:
        assert "/" not in attachment.save_name and not attachment.save_name.startswith(".")


def test_a_message_with_very_many_parts_is_read_up_to_a_bound() -> None:
    from desktop.viewer.message import MAX_PARTS

    parts = b"".join(b"--b\r\nContent-Type: application/octet-stream\r\n\r\nx\r\n" for _ in range(3000))
    raw = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n" + parts + b"--b--\r\n"
    view = read_message(raw)
    assert len(view.attachments) < MAX_PARTS
