"""Search and suggest over the directory snapshot in force (issue 5 items 2 and 7).

The index (storage/schema_directory_search.py) holds, per BAL, normalised search keys
computed in Python (domain/directory_text.py), and each engine's full-text index over the
``doc`` column: FTS5 on SQLite, GIN ``to_tsvector('simple', doc)`` on PostgreSQL. A query is
answered in two steps, the same on both engines:

1. *matching* — every query word must match a word of the BAL: exactly, as a prefix (every
   word for :meth:`DirectorySearch.search`, the last one for
   :meth:`DirectorySearch.suggest`), or, for words of at least 5 letters, through a
   one-edit variant found in the snapshot's vocabulary (small typos);
2. *ranking* — a portable SQL ``CASE`` per word (family/structure name exact > given name
   exact > name prefix > structure exact > name typo > other fields), summed; ties are
   broken by name then BAL address (byte order on both engines).

A one-word query whose best tier (the BALs whose family or structure name is that word)
fills the requested page is answered from ``directory_search_names`` alone, in index
order, without scoring every match: same page, same scores (see
:meth:`DirectorySearch._name_tier`). This is what keeps a common family name fast.

Red-listed BALs (``listeRouge``) are never returned (R49), and only the snapshot in force
(``directory_current`` kind ``bal``) is searched.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    and_,
    case,
    column,
    delete,
    false,
    insert,
    literal,
    or_,
    select,
    table,
    text,
)

from mssante.domain.directory import DirectoryEntry
from mssante.domain.directory_text import (
    QueryWord,
    display_name,
    normalise,
    parse_query,
    search_keys,
    typo_candidates,
    vocabulary,
)
from mssante.storage.database import Database
from mssante.storage.schema_directory import directory_current, directory_entries
from mssante.storage.schema_directory_search import directory_search_docs as docs
from mssante.storage.schema_directory_search import directory_search_names as names
from mssante.storage.schema_directory_search import directory_search_terms as terms
from mssante.storage.upsert import dialect_insert

__all__ = [
    "DirectorySearch",
    "SearchHit",
    "drop_snapshot_index",
    "entry_from_row",
    "index_entries",
    "index_snapshot",
]

BATCH = 5000
MAX_LIMIT = 200
SQLITE_MMAP = 1 << 30  # read the index through the OS page cache, not a 2 MB private one
_ENTRY_FIELDS = tuple(f.name for f in fields(DirectoryEntry))
_FTS = table("directory_search_fts", column("rowid"))
_TSV_MATCH = (
    "to_tsvector('simple'::regconfig, directory_search_docs.doc) "
    "@@ to_tsquery('simple'::regconfig, :tsquery)"
)

# Scores of one query word, best first (the first condition that holds gives the score).
NAME_EXACT, GIVEN_EXACT, NAME_PREFIX, GIVEN_PREFIX = 100, 80, 60, 50
ORG_EXACT, NAME_TYPO, ORG_PREFIX = 40, 30, 25
OTHER_EXACT, OTHER_PREFIX, OTHER_TYPO = 20, 10, 5
ADDRESS_EXACT = 1000  # the query is the BAL address itself


@dataclass(frozen=True, slots=True)
class SearchHit:
    """One result: the BAL and its score (higher is better)."""

    entry: DirectoryEntry
    score: int

    @property
    def name(self) -> str:
        return display_name(self.entry)


def entry_from_row(row: Any) -> DirectoryEntry:
    """A :class:`DirectoryEntry` from a ``directory_entries`` row."""
    mapping = row._mapping
    values = {name: mapping[name] for name in _ENTRY_FIELDS}
    values["list_rouge"] = bool(values["list_rouge"])
    return DirectoryEntry(**values)


# -- indexing ----------------------------------------------------------------------------


def _doc_row(entry_id: int, snapshot_id: int, entry: DirectoryEntry) -> dict[str, Any]:
    keys = search_keys(entry)
    return {
        "entry_id": entry_id,
        "snapshot_id": snapshot_id,
        "address": entry.address,
        "bal_type": entry.bal_type,
        "list_rouge": entry.list_rouge,
        "k_name": keys.k_name,
        "k_given": keys.k_given,
        "k_org": keys.k_org,
        "k_city": keys.k_city[:255],
        "k_profession": keys.k_profession,
        "profession_code": entry.profession_code[:16],
        "postcode": entry.postcode.strip()[:16],
        "dept_code": keys.dept_code[:8],
        "sort_name": keys.sort_name[:255],
        "doc": keys.doc,
    }


def _insert_names(conn: Connection, batch: Sequence[dict[str, Any]]) -> None:
    """The name words of the BALs that may be shown (see :meth:`DirectorySearch._name_tier`)."""
    rows = [
        {
            "snapshot_id": r["snapshot_id"],
            "word": word,
            "sort_name": r["sort_name"],
            "address": r["address"],
            "entry_id": r["entry_id"],
        }
        for r in batch
        if not r["list_rouge"]
        for word in sorted(set(r["k_name"].split()))
        if len(word) <= 255
    ]
    if rows:
        conn.execute(insert(names), rows)


def _insert_terms(conn: Connection, snapshot_id: int, words: Iterable[str]) -> None:
    rows = [{"snapshot_id": snapshot_id, "term": t} for t in sorted(words) if len(t) <= 255]
    stmt = dialect_insert(conn, terms).on_conflict_do_nothing()
    for start in range(0, len(rows), 10 * BATCH):
        conn.execute(stmt, rows[start : start + 10 * BATCH])


def index_snapshot(conn: Connection, snapshot_id: int) -> None:
    """Build the search index of every entry of ``snapshot_id`` (inside the import's
    transaction, before the switch). Rebuilds it if it exists."""
    drop_snapshot_index(conn, snapshot_id)
    e = directory_entries
    seen: set[str] = set()
    last = -1
    while True:
        rows = conn.execute(
            select(e)
            .where(e.c.snapshot_id == snapshot_id, e.c.id > last)
            .order_by(e.c.id)
            .limit(BATCH)
        ).all()
        if not rows:
            break
        batch = []
        for row in rows:
            entry_row = _doc_row(row.id, snapshot_id, entry_from_row(row))
            seen.update(vocabulary(entry_row["doc"]))
            batch.append(entry_row)
        conn.execute(insert(docs), batch)
        _insert_names(conn, batch)
        last = rows[-1].id
    _insert_terms(conn, snapshot_id, seen)
    if conn.dialect.name == "sqlite":
        conn.execute(
            text(
                "INSERT INTO directory_search_fts(rowid, doc) "
                "SELECT entry_id, doc FROM directory_search_docs WHERE snapshot_id = :s"
            ),
            {"s": snapshot_id},
        )
    else:
        conn.execute(text("ANALYZE directory_search_docs"))


_FTS_DELETE = {
    "snapshot": text(
        "INSERT INTO directory_search_fts(directory_search_fts, rowid, doc) "
        "SELECT 'delete', entry_id, doc FROM directory_search_docs WHERE snapshot_id = :key"
    ),
    "entry": text(
        "INSERT INTO directory_search_fts(directory_search_fts, rowid, doc) "
        "SELECT 'delete', entry_id, doc FROM directory_search_docs WHERE entry_id = :key"
    ),
}


def _fts_delete(conn: Connection, by: str, key: int) -> None:
    """Remove rows from the external-content FTS5 index (SQLite only): FTS5 needs the
    indexed values back, which are still in directory_search_docs."""
    if conn.dialect.name == "sqlite":
        conn.execute(_FTS_DELETE[by], {"key": key})


def drop_snapshot_index(conn: Connection, snapshot_id: int) -> None:
    """Remove the search index of ``snapshot_id`` (a retired or failed snapshot)."""
    _fts_delete(conn, "snapshot", snapshot_id)
    conn.execute(delete(docs).where(docs.c.snapshot_id == snapshot_id))
    conn.execute(delete(names).where(names.c.snapshot_id == snapshot_id))
    conn.execute(delete(terms).where(terms.c.snapshot_id == snapshot_id))


def index_entries(conn: Connection, snapshot_id: int, addresses: Sequence[str]) -> None:
    """Re-index the given BALs of ``snapshot_id`` after their rows were inserted, updated
    or deleted in place (an address without a row any more leaves the index)."""
    wanted = sorted({a.strip().lower() for a in addresses if a.strip()})
    e = directory_entries
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        old = [
            r.entry_id
            for r in conn.execute(
                select(docs.c.entry_id).where(
                    docs.c.snapshot_id == snapshot_id, docs.c.address.in_(chunk)
                )
            )
        ]
        for entry_id in old:
            _fts_delete(conn, "entry", entry_id)
        if old:
            conn.execute(delete(docs).where(docs.c.entry_id.in_(old)))
            conn.execute(delete(names).where(names.c.entry_id.in_(old)))
        rows = conn.execute(
            select(e).where(e.c.snapshot_id == snapshot_id, e.c.address.in_(chunk))
        ).all()
        if not rows:
            continue
        batch = [_doc_row(row.id, snapshot_id, entry_from_row(row)) for row in rows]
        conn.execute(insert(docs), batch)
        _insert_names(conn, batch)
        seen: set[str] = set()
        for doc_row in batch:
            seen.update(vocabulary(doc_row["doc"]))
        _insert_terms(conn, snapshot_id, seen)
        if conn.dialect.name == "sqlite":
            conn.execute(
                text(
                    "INSERT INTO directory_search_fts(rowid, doc) "
                    "SELECT entry_id, doc FROM directory_search_docs WHERE entry_id = :id"
                ),
                [{"id": r["entry_id"]} for r in batch],
            )


# -- querying ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Word:
    word: str
    prefix: bool
    variants: tuple[str, ...]  # one-edit variants present in the snapshot's vocabulary


def _word_score(w: _Word) -> ColumnElement[Any]:
    d = docs.c

    def exact(col: Any) -> ColumnElement[bool]:
        return col.like(f"% {w.word} %")  # type: ignore[no-any-return]

    def prefix(col: Any) -> ColumnElement[bool]:
        return col.like(f"% {w.word}%")  # type: ignore[no-any-return]

    whens: list[tuple[ColumnElement[bool], int]] = [
        (exact(d.k_name), NAME_EXACT),
        (exact(d.k_given), GIVEN_EXACT),
    ]
    if w.prefix:
        whens += [(prefix(d.k_name), NAME_PREFIX), (prefix(d.k_given), GIVEN_PREFIX)]
    whens.append((exact(d.k_org), ORG_EXACT))
    if w.variants:
        typo = [c.like(f"% {v} %") for v in w.variants for c in (d.k_name, d.k_given)]
        whens.append((or_(*typo), NAME_TYPO))
    if w.prefix:
        whens.append((prefix(d.k_org), ORG_PREFIX))
    whens.append((exact(d.doc), OTHER_EXACT))
    if w.prefix:
        whens.append((prefix(d.doc), OTHER_PREFIX))
    return case(*whens, else_=OTHER_TYPO)


def _fts5_query(words: Sequence[_Word]) -> str:
    groups = []
    for w in words:
        alternatives = [f'"{w.word}"*' if w.prefix else f'"{w.word}"']
        alternatives += [f'"{v}"' for v in w.variants]
        groups.append("(" + " OR ".join(alternatives) + ")")
    return " AND ".join(groups)


def _tsquery(words: Sequence[_Word]) -> str:
    groups = []
    for w in words:
        alternatives = [f"'{w.word}':*" if w.prefix else f"'{w.word}'"]
        alternatives += [f"'{v}'" for v in w.variants]
        groups.append("(" + " | ".join(alternatives) + ")")
    return " & ".join(groups)


@dataclass(frozen=True, slots=True)
class _Filters:
    bal_type: str | None = None
    city: str | None = None
    postcode: str | None = None
    departement: str | None = None
    profession: str | None = None

    def conditions(self) -> list[ColumnElement[bool]]:
        d = docs.c
        out: list[ColumnElement[bool]] = []
        if self.bal_type:
            out.append(d.bal_type == self.bal_type.strip().upper())
        if self.city and (city := normalise(self.city)):
            out.append(or_(d.k_city == city, d.k_city.like(f"{city} %")))
        if self.postcode and (code := normalise(self.postcode).replace(" ", "")):
            out.append(d.postcode.like(f"{code}%"))
        if self.departement and (dept := normalise(self.departement).replace(" ", "")):
            out.append(d.dept_code == dept.upper())
        if self.profession and (label := normalise(self.profession)):
            out.append(
                or_(
                    d.profession_code == self.profession.strip(), d.k_profession.like(f"% {label}%")
                )
            )
        return out


class DirectorySearch:
    """Search (ranked, paged) and suggest (ten best) over the directory in force."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def search(
        self,
        query: str,
        *,
        bal_type: str | None = None,
        city: str | None = None,
        postcode: str | None = None,
        departement: str | None = None,
        profession: str | None = None,
        limit: int = 20,
        offset: int = 0,
    ) -> list[SearchHit]:
        filters = _Filters(bal_type, city, postcode, departement, profession)
        return self._run(query, True, filters, limit, offset)

    def suggest(self, q: str, limit: int = 10) -> list[SearchHit]:
        return self._run(q, False, _Filters(), limit, 0)

    def _run(
        self, query: str, prefix_all: bool, filters: _Filters, limit: int, offset: int
    ) -> list[SearchHit]:
        limit = max(0, min(limit, MAX_LIMIT))
        parsed = parse_query(query, prefix_all=prefix_all)
        if not parsed or limit == 0:
            return []
        with self.db.read() as conn:
            if conn.dialect.name == "sqlite":  # a fresh connection each time (NullPool)
                conn.exec_driver_sql(f"PRAGMA mmap_size={SQLITE_MMAP}")
            snapshot = conn.execute(
                select(directory_current.c.snapshot_id).where(directory_current.c.kind == "bal")
            ).scalar()
            if snapshot is None:
                return []
            offset = max(0, offset)
            scored: Sequence[Any] | None = None
            if len(parsed) == 1 and not filters.conditions():
                scored = self._name_tier(conn, snapshot, parsed[0].word, query, limit, offset)
            if scored is None:
                words = _with_variants(conn, snapshot, parsed)
                scored = conn.execute(
                    self._statement(conn, snapshot, words, query, filters, limit, offset)
                ).all()
            if not scored:
                return []
            ids = [r.entry_id for r in scored]
            rows = conn.execute(select(directory_entries).where(directory_entries.c.id.in_(ids)))
            by_id = {row.id: entry_from_row(row) for row in rows}
        return [SearchHit(by_id[r.entry_id], int(r.score)) for r in scored if r.entry_id in by_id]

    @staticmethod
    def _name_tier(
        conn: Connection, snapshot: int, word: str, query: str, limit: int, offset: int
    ) -> Sequence[Any] | None:
        """The page of a one-word query when its best tier fills it, else ``None``.

        The BALs whose name key holds the word score NAME_EXACT, the highest score a
        one-word query can give (unless the query is a BAL address: then the general
        path adds ADDRESS_EXACT), and rank among themselves by name then address: when
        at least ``offset + limit`` of them exist, they are the page, read in order from
        the primary key of directory_search_names without scoring the thousands of BALs
        a common family name matches.
        """
        d, n = docs.c, names.c
        address = query.strip().lower()
        if conn.execute(
            select(d.entry_id).where(d.snapshot_id == snapshot, d.address == address)
        ).first():
            return None
        rows = conn.execute(
            select(n.entry_id, literal(NAME_EXACT).label("score"))
            .where(n.snapshot_id == snapshot, n.word == word)
            .order_by(n.sort_name, n.address)
            .limit(offset + limit)
        ).all()
        return rows[offset:] if len(rows) == offset + limit else None

    @staticmethod
    def _statement(
        conn: Connection,
        snapshot: int,
        words: Sequence[_Word],
        query: str,
        filters: _Filters,
        limit: int,
        offset: int,
    ) -> Any:
        d = docs.c
        # One-letter prefixes match a large share of the vocabulary: when other words
        # narrow the match, they are checked on the candidates only (same result).
        short = [w for w in words if w.prefix and len(w.word) == 1 and not w.variants]
        indexed = [w for w in words if w not in short] or list(words)
        post = [w for w in short if w not in indexed]
        score: ColumnElement[Any] = literal(0)
        for w in words:
            score = score + _word_score(w)
        address = query.strip().lower()
        score = score + case((d.address == address, ADDRESS_EXACT), else_=0)
        # "+ 0": the snapshot's index must not drive the query (SQLite would then run the
        # full-text match once per row of the snapshot); the full-text index does.
        conditions = [(d.snapshot_id + 0) == snapshot, d.list_rouge == false()]
        conditions += [d.doc.like(f"% {w.word}%") for w in post]
        conditions += filters.conditions()
        sqlite = conn.dialect.name == "sqlite"
        labelled = score.label("score")
        stmt = select(d.entry_id, labelled)
        if sqlite:
            match = text("directory_search_fts MATCH :fts").bindparams(fts=_fts5_query(indexed))
            stmt = stmt.select_from(_FTS.join(docs, d.entry_id == _FTS.c.rowid)).where(match)
            order: list[Any] = [labelled.desc(), d.sort_name, d.address]
        else:
            tsv = text(_TSV_MATCH).bindparams(tsquery=_tsquery(indexed))
            stmt = stmt.where(tsv)
            order = [labelled.desc(), d.sort_name.collate("C"), d.address.collate("C")]
        return stmt.where(and_(*conditions)).order_by(*order).limit(limit).offset(offset)


def _with_variants(conn: Connection, snapshot: int, parsed: Sequence[QueryWord]) -> list[_Word]:
    candidates = {w.word: typo_candidates(w.word) for w in parsed}
    wanted = sorted(set().union(*candidates.values()))
    found: set[str] = set()
    if wanted:
        found = set(
            conn.execute(
                select(terms.c.term).where(
                    terms.c.snapshot_id == snapshot, terms.c.term.in_(wanted)
                )
            ).scalars()
        )
    return [_Word(w.word, w.prefix, tuple(sorted(candidates[w.word] & found))) for w in parsed]
