"""Sample messages for the viewer tests (a module name no other test directory uses), as a sender's mail
program would produce them: encoded words, quoted-printable and base64, legacy charsets, a bounce."""

from __future__ import annotations

from email.message import EmailMessage
from email.policy import SMTP
from typing import cast

ALICE = "alice@example.test"
# A tiny but valid PDF: the attachment test compares bytes, not rendering.
PDF = (b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n2 0 obj<</Type/Pages/Count 0/Kids[]>>endobj\n"
       b"trailer<</Root 1 0 R>>\n%%EOF\n" + bytes(range(256)))
# A 1x1 PNG for cid: inline images.
PNG = bytes.fromhex("89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489"
                    "0000000d49444154789c63f8cfc0f01f0005000201a5d3d7e90000000049454e44ae426082")


def _base(subject: str, sender: str = "Carol Example <carol@remote.test>", to: str = ALICE) -> EmailMessage:
    msg = EmailMessage(policy=SMTP)
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = "Tue, 02 Jan 2024 09:30:00 +0100"
    msg["Message-ID"] = f"<{abs(hash(subject))}@remote.test>"
    return msg


def plain_text() -> bytes:
    msg = _base("Grüße aus Köln — ein Test")
    msg.set_content("Hallo Alice,\n\nschau mal: https://example.org/page?x=1.\n\nViele Grüße\nCarol\n",
                    cte="quoted-printable")
    return msg.as_bytes()


def newsletter(remote_img: str) -> bytes:
    """HTML with a remote image (a tracking pixel), a script that would rename the page, and a cid: image."""
    msg = _base("Our weekly newsletter", sender="News <news@shop.test>")
    msg.set_content("Plain version of the newsletter.\n")
    html = (f"<html><head><title>Newsletter</title></head><body>"
            f"<h1 id='headline'>This week</h1><p>Big news <a href='https://shop.test/offer'>here</a>.</p>"
            f"<img src='{remote_img}' width='1' height='1' alt=''>"
            f"<img src='cid:logo@shop.test' alt='logo' id='logo'>"
            f"<script>document.title = 'script ran';</script>"
            f"<p onclick=\"document.title='clicked'\">Unsubscribe below.</p></body></html>")
    msg.add_alternative(html, subtype="html")
    html_part = cast(list[EmailMessage], msg.get_payload())[1]
    html_part.add_related(PNG, "image", "png", cid="<logo@shop.test>")
    return msg.as_bytes()


def with_attachments() -> bytes:
    msg = _base("The report you asked for")
    msg.set_content("Attached: the report.\n")
    msg.add_attachment(PDF, maintype="application", subtype="pdf", filename="report.pdf")
    msg.add_attachment(b"alias rm='rm -rf /'\n", maintype="application", subtype="octet-stream",
                       filename="../../.bashrc")
    msg.add_attachment(b"MZ fake executable", maintype="application", subtype="octet-stream",
                       filename="invoice\u202efdp.exe")
    return msg.as_bytes()


def latin1() -> bytes:
    return (b"From: =?iso-8859-1?q?Fran=E7ois_P=E9rez?= <francois@remote.test>\r\n"
            b"To: alice@example.test\r\n"
            b"Subject: =?iso-8859-1?q?Caf=E9_cr=E8me?=\r\n"
            b"Date: Tue, 02 Jan 2024 10:00:00 +0000\r\n"
            b"Message-ID: <latin1@remote.test>\r\n"
            b"MIME-Version: 1.0\r\n"
            b"Content-Type: text/plain; charset=iso-8859-1\r\n"
            b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
            b"Un caf=E9 cr=E8me, s'il vous pla=EEt.\r\n")


def koi8r() -> bytes:
    import base64

    body = base64.encodebytes("Привет, Алиса! Как дела?\n".encode("koi8-r"))
    subject = base64.b64encode("Привет".encode("koi8-r")).decode()
    return (b"From: Ivan <ivan@remote.test>\r\nTo: alice@example.test\r\n"
            b"Subject: =?koi8-r?b?" + subject.encode() + b"?=\r\n"
            b"Date: Tue, 02 Jan 2024 11:00:00 +0300\r\nMessage-ID: <koi8@remote.test>\r\n"
            b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=koi8-r\r\n"
            b"Content-Transfer-Encoding: base64\r\n\r\n" + body.replace(b"\n", b"\r\n"))


def bounce() -> bytes:
    return (b"From: Mail Delivery System <MAILER-DAEMON@mx.example.test>\r\n"
            b"To: alice@example.test\r\n"
            b"Subject: Undelivered Mail Returned to Sender\r\n"
            b"Date: Tue, 02 Jan 2024 12:00:00 +0000\r\n"
            b"Message-ID: <bounce1@mx.example.test>\r\n"
            b"MIME-Version: 1.0\r\n"
            b"Content-Type: multipart/report; report-type=delivery-status; boundary=\"BOUNDARY\"\r\n\r\n"
            b"--BOUNDARY\r\nContent-Type: text/plain\r\n\r\n"
            b"Your message could not be delivered to one or more recipients.\r\n\r\n"
            b"--BOUNDARY\r\nContent-Type: message/delivery-status\r\n\r\n"
            b"Reporting-MTA: dns; mx.example.test\r\n"
            b"Arrival-Date: Tue, 02 Jan 2024 11:59:00 +0000\r\n\r\n"
            b"Final-Recipient: rfc822; nobody@remote.test\r\n"
            b"Action: failed\r\nStatus: 5.1.1\r\nRemote-MTA: dns; mx.remote.test\r\n"
            b"Diagnostic-Code: smtp; 550 5.1.1 <nobody@remote.test>: Recipient address\r\n"
            b" rejected: User unknown\r\n\r\n"
            b"Final-Recipient: rfc822; slow@remote.test\r\nAction: delayed\r\nStatus: 4.4.1\r\n\r\n"
            b"--BOUNDARY\r\nContent-Type: text/rfc822-headers\r\n\r\n"
            b"From: alice@example.test\r\nTo: nobody@remote.test\r\nSubject: Lunch on Friday?\r\n"
            b"Message-ID: <lunch@example.test>\r\n\r\n"
            b"--BOUNDARY--\r\n")


def spoofing() -> bytes:
    """A display name that shows another address, and a right-to-left override in the name."""
    return (b"From: \"support@bank.test\" <attacker@evil.test>\r\n"
            b"To: alice@example.test\r\nSubject: =?utf-8?q?Your_account_=E2=80=AEgnp.exe?=\r\n"
            b"Date: Tue, 02 Jan 2024 12:30:00 +0000\r\nMessage-ID: <spoof@evil.test>\r\n"
            b"Authentication-Results: evil.test; spf=pass smtp.mailfrom=bank.test; dkim=pass header.d=bank.test\r\n"
            b"Content-Type: text/plain; charset=utf-8\r\n\r\nClick here.\r\n")


def authenticated(hostname: str) -> bytes:
    return (f"Authentication-Results: {hostname}; spf=pass smtp.mailfrom=carol@remote.test;\r\n"
            f" dkim=fail reason=\"signature did not verify\" header.d=remote.test; dmarc=fail header.from=remote.test\r\n"
            f"Authentication-Results: {hostname}; spf=fail smtp.mailfrom=old.test\r\n"
            f"From: Carol <carol@remote.test>\r\nTo: alice@example.test\r\nSubject: Checked\r\n"
            f"Date: Tue, 02 Jan 2024 13:00:00 +0000\r\nMessage-ID: <auth@remote.test>\r\n\r\nHello.\r\n").encode()
