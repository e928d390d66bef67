"""The per-account index database (index.sqlite): schema, connection settings, transactions.

The Maildir files are the truth about which messages exist and their system flags; the index adds
what Maildir cannot hold (UIDs, UIDVALIDITY, MODSEQ, keywords, expunge history, caches, summary
columns) and lets status()/messages() answer for 100,000 messages without touching a file.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS folders (
    id            INTEGER PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,      -- IMAP name, "/" separated, "INBOX" for the inbox
    dirname       TEXT NOT NULL UNIQUE,      -- Maildir++ directory relative to the account, "" = INBOX
    uidvalidity   INTEGER NOT NULL,
    uidnext       INTEGER NOT NULL,
    highestmodseq INTEGER NOT NULL,
    special_use   TEXT,
    subscribed    INTEGER NOT NULL DEFAULT 1,  -- unused since the subscriptions table (kept for old files)
    new_mtime     INTEGER,                   -- st_mtime_ns of new/ and cur/ when the index last matched
    cur_mtime     INTEGER
);
-- IMAP subscriptions by name: a name stays subscribed when its folder is deleted or vanishes (RFC 3501
-- §6.3.6 forbids dropping it), and a name may be subscribed before its folder exists.
CREATE TABLE IF NOT EXISTS subscriptions (
    name TEXT PRIMARY KEY
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS messages (
    fid             INTEGER NOT NULL,
    uid             INTEGER NOT NULL,
    base            TEXT NOT NULL,           -- Maildir file name without the ":2,<info>" suffix
    subdir          TEXT NOT NULL,           -- "new" or "cur"
    info            TEXT NOT NULL,           -- Maildir info letters as on disk (system flags and others)
    keywords        TEXT NOT NULL,           -- space-separated IMAP keywords (never on disk)
    seen            INTEGER NOT NULL,
    modseq          INTEGER NOT NULL,
    size            INTEGER NOT NULL,        -- RFC822.SIZE (CRLF)
    internaldate    REAL NOT NULL,
    date            REAL,
    sort_date       REAL NOT NULL,           -- Date: header, or internaldate when it has none
    sender          TEXT NOT NULL,
    subject         TEXT NOT NULL,
    message_id      TEXT NOT NULL,
    in_reply_to     TEXT NOT NULL,
    refs            TEXT NOT NULL,
    has_attachments INTEGER NOT NULL,
    PRIMARY KEY (fid, uid)
) WITHOUT ROWID;                             -- clustered by (fid, uid): messages() reads one range
CREATE UNIQUE INDEX IF NOT EXISTS messages_base ON messages (fid, base);
CREATE INDEX IF NOT EXISTS messages_modseq ON messages (fid, modseq);
CREATE INDEX IF NOT EXISTS messages_status ON messages (fid, seen, subdir, size);
CREATE INDEX IF NOT EXISTS messages_date ON messages (fid, sort_date, uid);
CREATE INDEX IF NOT EXISTS messages_sender ON messages (fid, sender COLLATE NOCASE, uid);
CREATE INDEX IF NOT EXISTS messages_subject ON messages (fid, subject COLLATE NOCASE, uid);
CREATE INDEX IF NOT EXISTS messages_size ON messages (fid, size, uid);
CREATE TABLE IF NOT EXISTS expunged (
    fid    INTEGER NOT NULL,
    uid    INTEGER NOT NULL,
    modseq INTEGER NOT NULL,
    PRIMARY KEY (fid, uid)
);
CREATE INDEX IF NOT EXISTS expunged_modseq ON expunged (fid, modseq);
-- Octets stored over all folders (what quotas count), kept by triggers in the same transaction as the
-- rows, so a quota check at delivery reads one row instead of summing 100,000.
CREATE TABLE IF NOT EXISTS usage (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    bytes INTEGER NOT NULL
);
CREATE TRIGGER IF NOT EXISTS usage_insert AFTER INSERT ON messages BEGIN
    UPDATE usage SET bytes = bytes + NEW.size WHERE id = 1;
END;
CREATE TRIGGER IF NOT EXISTS usage_delete AFTER DELETE ON messages BEGIN
    UPDATE usage SET bytes = bytes - OLD.size WHERE id = 1;
END;
CREATE TRIGGER IF NOT EXISTS usage_resize AFTER UPDATE OF size ON messages BEGIN
    UPDATE usage SET bytes = bytes - OLD.size + NEW.size WHERE id = 1;
END;
CREATE TABLE IF NOT EXISTS cache (
    fid   INTEGER NOT NULL,
    uid   INTEGER NOT NULL,
    key   TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (fid, uid, key)
);
"""


def connect(path: Path, *, durable: bool = False) -> sqlite3.Connection:
    """A connection that is never used by two threads at once (callers hold a lock or a group-commit
    leadership while using it).

    NORMAL: commits are atomic and survive a process crash.  `durable` (FULL) also fsyncs the WAL at
    every commit: the connection that records new messages uses it, so a power cut cannot roll back a
    UID that a client may already have seen and hand it out again for another message."""
    db = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
    db.executescript(SCHEMA)
    db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
    # An index made before the usage table existed starts it from its rows, once, in one transaction
    # with the check (the triggers above keep it from then on, whichever connection writes).
    with transaction(db):
        db.execute("INSERT OR IGNORE INTO usage (id, bytes) SELECT 1, coalesce(sum(size), 0) FROM messages "
                   "WHERE NOT EXISTS (SELECT 1 FROM usage)")
        # Likewise an index from before the subscriptions table: its folders' own flags carry over, once.
        if db.execute("SELECT 1 FROM meta WHERE key = 'subscriptions'").fetchone() is None:
            db.execute("INSERT OR IGNORE INTO subscriptions (name) SELECT name FROM folders WHERE subscribed")
            db.execute("INSERT INTO meta (key, value) VALUES ('subscriptions', '1')")
    return db


def used_bytes(db: sqlite3.Connection) -> int:
    """Octets of all messages in the index (RFC822.SIZE summed), read from the trigger-kept total."""
    row = db.execute("SELECT bytes FROM usage WHERE id = 1").fetchone()
    if row is None:      # only if something deleted the row behind our back: count the slow way
        row = db.execute("SELECT coalesce(sum(size), 0) FROM messages").fetchone()
    return int(row[0])


@contextmanager
def transaction(db: sqlite3.Connection, *, durable: bool = False) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error); `durable` fsyncs the WAL at commit."""
    if durable:
        db.execute("PRAGMA synchronous=FULL")
    try:
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
    finally:
        if durable:
            db.execute("PRAGMA synchronous=NORMAL")
