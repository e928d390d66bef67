"""Conversation threads from References and In-Reply-To (RFC 5322 §3.6.4), as an indented flat list.

A simplified form of the algorithm mail readers have used since Netscape (the "JWZ" threading): a
message's parent is the message named by In-Reply-To, else the nearest ancestor in References that is in
this folder; threads are ordered by their newest message, replies within a thread by date.  Iterative,
with cycle checks, because these headers come from strangers.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from engine.interfaces import MessageSummary

_MSGID = re.compile(r"<[^<>\s]+>")


def message_ids(text: str) -> list[str]:
    """The msg-ids in a References or In-Reply-To value, in order."""
    return _MSGID.findall(text or "")


def _when(s: MessageSummary) -> float:
    return s.date if s.date is not None else s.internaldate


def thread_order(summaries: Sequence[MessageSummary], newest_first: bool = True) -> list[tuple[MessageSummary, int]]:
    """Each message with its depth in its thread, threads one after another."""
    by_id: dict[str, int] = {}
    for i, s in enumerate(summaries):
        ids = message_ids(s.message_id)
        if ids and ids[0] not in by_id:
            by_id[ids[0]] = i

    parent: list[int | None] = [None] * len(summaries)
    for i, s in enumerate(summaries):
        candidates = message_ids(s.in_reply_to)[:1] + list(reversed(message_ids(s.references)))
        for ref in candidates:
            p = by_id.get(ref)
            if p is not None and p != i:
                parent[i] = p
                break
    # Break cycles (A replies to B replies to A) in linear time: walk up from each message marking the
    # path; meeting a message on the current path means a cycle, cut where it closes.
    state = [0] * len(summaries)        # 0 unvisited, 1 on the current path, 2 done
    for i in range(len(summaries)):
        path: list[int] = []
        k: int | None = i
        while k is not None and state[k] == 0:
            state[k] = 1
            path.append(k)
            k = parent[k]
        if k is not None and state[k] == 1:
            parent[k] = None
        for j in path:
            state[j] = 2

    children: dict[int, list[int]] = {}
    roots: list[int] = []
    for i, p in enumerate(parent):
        if p is None:
            roots.append(i)
        else:
            children.setdefault(p, []).append(i)
    for kids in children.values():
        kids.sort(key=lambda k: (_when(summaries[k]), summaries[k].uid))

    newest: dict[int, float] = {}
    for root in roots:
        best = _when(summaries[root])
        stack = list(children.get(root, ()))
        while stack:
            k = stack.pop()
            best = max(best, _when(summaries[k]))
            stack.extend(children.get(k, ()))
        newest[root] = best
    roots.sort(key=lambda r: (newest[r], summaries[r].uid), reverse=newest_first)

    out: list[tuple[MessageSummary, int]] = []
    for root in roots:
        work: list[tuple[int, int]] = [(root, 0)]
        while work:
            k, depth = work.pop()
            out.append((summaries[k], depth))
            work.extend((c, depth + 1) for c in reversed(children.get(k, ())))
    return out
