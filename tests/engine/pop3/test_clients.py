"""Real POP3 clients against the real server: Python's poplib, curl, fetchmail and getmail6.

Each downloads what the store holds, byte for byte, and (where it deletes) leaves the INBOX empty.
"""

from __future__ import annotations

import os
import poplib
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from .conftest import ALICE, ALICE_PW, POP3Server, message

DOTTED = (b"From: a@remote.test\r\nTo: alice@example.test\r\nSubject: dots\r\n\r\n"
          b".leading dot\r\n..two dots\r\n.\r\nend\r\n")
PEER_TIMEOUT = 30


def needs(program: str) -> pytest.MarkDecorator:
    return pytest.mark.skipif(shutil.which(program) is None, reason=f"{program} is not installed (make peers)")


def as_lf(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n")


class TestPoplib:
    def test_download_with_stls_and_delete(self, server: POP3Server) -> None:
        server.deliver(ALICE, message("one"))
        server.deliver(ALICE, DOTTED)
        client = poplib.POP3("127.0.0.1", server.port, timeout=PEER_TIMEOUT)
        try:
            assert "STLS" in client.capa()
            client.stls(server.client_tls)
            client.user(ALICE)
            client.pass_(ALICE_PW)
            assert client.stat() == (2, len(message("one")) + len(DOTTED))
            _, lines, octets = client.retr(2)
            assert b"\r\n".join(lines) + b"\r\n" == DOTTED and octets == len(DOTTED)
            uidl = client.uidl()[1]
            assert uidl[0].split()[1].decode() == f"{server.uidvalidity()}.{server.uids()[0]}"
            client.dele(1)
            client.dele(2)
            client.quit()
        finally:
            client.close()
        assert server.uids() == []

    def test_pop3s_with_rset(self, server: POP3Server) -> None:
        server.deliver(ALICE, message("kept"))
        client = poplib.POP3_SSL("127.0.0.1", server.tls_port, context=server.client_tls, timeout=PEER_TIMEOUT)
        try:
            client.user(ALICE)
            client.pass_(ALICE_PW)
            client.dele(1)
            client.rset()
            client.quit()
        finally:
            client.close()
        assert len(server.uids()) == 1

    def test_a_second_session_gets_in_use(self, server: POP3Server) -> None:
        first = poplib.POP3("127.0.0.1", server.port, timeout=PEER_TIMEOUT)
        second = poplib.POP3("127.0.0.1", server.port, timeout=PEER_TIMEOUT)
        try:
            first.user(ALICE)
            first.pass_(ALICE_PW)
            second.user(ALICE)
            with pytest.raises(poplib.error_proto, match=r"\[IN-USE\]"):
                second.pass_(ALICE_PW)
            first.quit()
        finally:
            first.close()
            second.close()


@pytest.mark.peers
@needs("curl")
class TestCurl:
    def test_pop3s_retrieves_a_dotted_message_intact(self, server: POP3Server, tmp_path: Path) -> None:
        server.deliver(ALICE, message("first"))
        server.deliver(ALICE, DOTTED)
        out = tmp_path / "2.eml"
        subprocess.run(["curl", "-sS", "-k", "--max-time", "20", "-o", str(out), "-u", f"{ALICE}:{ALICE_PW}",
                        f"pop3s://127.0.0.1:{server.tls_port}/2"], check=True, timeout=PEER_TIMEOUT)
        assert out.read_bytes() == DOTTED

    def test_listing_and_delete_over_stls(self, server: POP3Server) -> None:
        server.deliver(ALICE, message("a"))
        server.deliver(ALICE, message("b"))
        base = ["curl", "-sS", "--max-time", "20", "--ssl-reqd", "--cacert", str(server.ca_file),
                "-u", f"{ALICE}:{ALICE_PW}"]
        listing = subprocess.run([*base, f"pop3://localhost:{server.port}/"], check=True, capture_output=True,
                                 timeout=PEER_TIMEOUT).stdout
        assert listing == f"1 {len(message('a'))}\r\n2 {len(message('b'))}\r\n".encode()
        # curl's DELE: -X DELE with -I (no transfer), on message 1.
        subprocess.run([*base, "-X", "DELE", "-I", f"pop3://localhost:{server.port}/1"], check=True,
                       capture_output=True, timeout=PEER_TIMEOUT)
        assert len(server.uids()) == 1


@pytest.mark.peers
@needs("fetchmail")
def test_fetchmail_downloads_over_stls_and_deletes(server: POP3Server, tmp_path: Path) -> None:
    sent = [message("fm one", ".starts with a dot\r\nplain\r\n"), DOTTED, message("fm three")]
    for data in sent:
        server.deliver(ALICE, data)
    out = tmp_path / "out"
    out.mkdir()
    rc = tmp_path / "fetchmailrc"
    rc.write_text(
        "set no bouncemail\n"
        f"poll 127.0.0.1 with proto POP3 port {server.port}\n"
        f'  user "{ALICE}" there with password "{ALICE_PW}" is root here\n'
        f'  sslproto "TLS1.2+" sslcertck sslcommonname "localhost" sslcertfile "{server.ca_file}"\n'
        f"  mda \"sh -c 'cat > $(mktemp {out}/msg.XXXXXX)'\"\n")
    rc.chmod(0o600)
    env = dict(os.environ, FETCHMAILHOME=str(tmp_path), HOME=str(tmp_path))
    done = subprocess.run(["fetchmail", "-f", str(rc), "--nodetach", "--nosyslog"], env=env,
                          capture_output=True, text=True, timeout=PEER_TIMEOUT)
    assert done.returncode == 0, done.stderr
    assert "unknown command" not in done.stderr
    got = sorted(p.read_bytes() for p in out.iterdir())
    assert len(got) == 3
    # fetchmail prepends its own Received: field and writes LF line ends; the message follows intact.
    for data in sent:
        assert sum(g.endswith(as_lf(data)) for g in got) == 1
    assert server.uids() == []


@pytest.mark.peers
@needs("getmail")
def test_getmail_downloads_over_pop3s_into_a_maildir_and_deletes(server: POP3Server, tmp_path: Path) -> None:
    sent = [DOTTED, message("gm two")]
    for data in sent:
        server.deliver(ALICE, data)
    # getmail6 delivers as an unprivileged user, who must reach the Maildir: pytest's tmp root is 0700.
    with tempfile.TemporaryDirectory(prefix="pop3-getmail-") as shared:
        os.chmod(shared, 0o755)
        run_getmail(server, tmp_path, Path(shared) / "Maildir", sent)
    assert server.uids() == []


def run_getmail(server: POP3Server, tmp_path: Path, maildir: Path, sent: list[bytes]) -> None:
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True)
    shutil.chown(maildir, "nobody")
    for sub in ("cur", "new", "tmp"):
        shutil.chown(maildir / sub, "nobody")
    state = tmp_path / "getmail"
    state.mkdir()
    rc = tmp_path / "getmailrc"
    rc.write_text(
        "[retriever]\ntype = SimplePOP3SSLRetriever\nserver = 127.0.0.1\n"
        f"port = {server.tls_port}\nusername = {ALICE}\npassword = {ALICE_PW}\n"
        f"ca_certs = {server.ca_file}\nssl_cert_hostname = localhost\n\n"
        # getmail6 refuses to deliver as root: name an unprivileged user.
        f"[destination]\ntype = Maildir\npath = {maildir}/\nuser = nobody\n\n"
        "[options]\ndelete = true\nread_all = true\nverbose = 0\n")
    done = subprocess.run(["getmail", "--rcfile", str(rc), "--getmaildir", str(state)],
                          capture_output=True, text=True, timeout=PEER_TIMEOUT)
    assert done.returncode == 0, done.stdout + done.stderr
    got = [p.read_bytes() for p in (maildir / "new").iterdir()]
    assert len(got) == 2
    for data in sent:
        assert sum(g.endswith(as_lf(data)) for g in got) == 1
