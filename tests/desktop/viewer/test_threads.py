"""Threads by References and In-Reply-To, as an indented list."""

from __future__ import annotations

from desktop.viewer.threads import thread_order
from engine.interfaces import MessageSummary


def summary(uid: int, msgid: str, when: float, in_reply_to: str = "", references: str = "") -> MessageSummary:
    return MessageSummary(uid=uid, flags=frozenset(), size=100, internaldate=when, date=when,
                          sender="x", subject=f"m{uid}", message_id=f"<{msgid}>",
                          in_reply_to=f"<{in_reply_to}>" if in_reply_to else "", references=references,
                          has_attachments=False)


def shape(rows: list[tuple[MessageSummary, int]]) -> list[tuple[int, int]]:
    return [(s.uid, depth) for s, depth in rows]


def test_replies_nest_under_their_parents_and_threads_sort_by_newest() -> None:
    rows = thread_order([
        summary(1, "a", 100),
        summary(2, "b", 200),
        summary(3, "c", 300, in_reply_to="a", references="<a>"),
        summary(4, "d", 400, references="<a> <c>"),
        summary(5, "e", 150, in_reply_to="a"),
    ])
    assert shape(rows) == [(1, 0), (5, 1), (3, 1), (4, 2), (2, 0)]


def test_missing_parent_uses_the_nearest_known_reference() -> None:
    rows = thread_order([summary(1, "a", 1), summary(2, "b", 2, in_reply_to="gone", references="<a> <gone>")])
    assert shape(rows) == [(1, 0), (2, 1)]


def test_cycles_and_self_references_do_not_loop() -> None:
    rows = thread_order([summary(1, "a", 1, in_reply_to="b"), summary(2, "b", 2, in_reply_to="a"),
                         summary(3, "c", 3, in_reply_to="c")])
    assert sorted(s.uid for s, _ in rows) == [1, 2, 3]


def test_a_long_chain_is_linear() -> None:
    chain = [summary(1, "m1", 1)] + [summary(i, f"m{i}", i, in_reply_to=f"m{i - 1}") for i in range(2, 20001)]
    rows = thread_order(chain)
    assert rows[-1][1] == 19999
