"""Translate the command parser's SEARCH tree (``search_keys``) into ``search_eval`` keys.

``to_eval_key(node, message_count=…, max_uid=…, saved=…)`` returns the tuple protocol of
``search_eval``: sequence sets become membership tests with ``*`` resolved against
``message_count`` (sequence numbers) or ``max_uid`` (UIDs), and ``$`` (RFC 5182) becomes
membership in ``saved``, the UIDs of the saved result (``None`` when nothing was saved: ``$``
then matches no message, as RFC 5182 §2.1 asks). Flags keep the parser's spelling; the
evaluator compares them case-insensitively.
"""

from __future__ import annotations

from collections.abc import Container

from mssante.imap.search_eval import SearchKey
from mssante.imap.search_keys import (
    SearchAll,
    SearchAnd,
    SearchDate,
    SearchFlag,
    SearchHeader,
    SearchModSeq,
    SearchNot,
    SearchOr,
    SearchSequence,
    SearchSize,
    SearchText,
)
from mssante.imap.search_keys import SearchKey as ParsedKey

__all__ = ["to_eval_key"]


def _members(node: SearchSequence, largest: int, saved: Container[int] | None) -> SearchKey:
    if node.sequence.saved:
        uids: Container[int] = saved if saved is not None else frozenset()
        return ("UID", uids)

    def test(number: int) -> bool:
        return node.sequence.contains(number, largest)

    return ("UID" if node.uid else "SEQ", test)


def to_eval_key(
    node: ParsedKey,
    *,
    message_count: int,
    max_uid: int,
    saved: Container[int] | None = None,
) -> SearchKey:
    """The ``search_eval`` key equivalent to the parsed ``node``."""

    def convert(key: ParsedKey) -> SearchKey:
        if isinstance(key, SearchAll):
            return ("ALL",)
        if isinstance(key, SearchFlag):
            return ("KEYWORD" if key.present else "UNKEYWORD", key.flag)
        if isinstance(key, SearchHeader):
            return ("HEADER", key.field, key.value)
        if isinstance(key, SearchText):
            return ("BODY" if key.body_only else "TEXT", key.value)
        if isinstance(key, SearchDate):
            return (("SENT" if key.sent else "") + key.op.upper(), key.value)
        if isinstance(key, SearchSize):
            return (key.op.upper(), key.size)
        if isinstance(key, SearchSequence):
            return _members(key, max_uid if key.uid else message_count, saved)
        if isinstance(key, SearchModSeq):
            return ("MODSEQ", key.modseq, key.entry_flag, key.entry_type)
        if isinstance(key, SearchNot):
            return ("NOT", convert(key.key))
        if isinstance(key, SearchOr):
            return ("OR", *(convert(k) for k in key.keys))
        if isinstance(key, SearchAnd):
            return ("AND", [convert(k) for k in key.keys])
        raise ValueError(f"unknown search key node {key!r}")

    return convert(node)
