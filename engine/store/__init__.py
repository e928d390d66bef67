"""The mail store: Maildir++ message files plus a per-account SQLite index (UIDs, flags, MODSEQ, caches).

On disk, under the mail root: `<domain>/<user>/` is a Maildir++ (cur/ new/ tmp/ for INBOX; `.Sent`,
`.Drafts`, `.Trash`, `.Junk`, `.Archive` and other folders as `.<a>.<b>` with their own cur/ new/ tmp/
and a `maildirfolder` marker), file names `<sec>.M<usec>P<pid>Q<n>.<host>,S=<size>,W=<crlf size>:2,<flags>`
with LF line ends, and `index.sqlite` (WAL) beside them, rebuilt from the files whenever it is missing.
"""

from engine.store.mailbox import AccountMailbox, AccountOverQuota, NoSuchMessage
from engine.store.mailstore import MailStore
from engine.store.names import InvalidName, decode_mutf7, encode_mutf7

__all__ = [
    "AccountMailbox",
    "AccountOverQuota",
    "InvalidName",
    "MailStore",
    "NoSuchMessage",
    "decode_mutf7",
    "encode_mutf7",
]
