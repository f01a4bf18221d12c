"""Text normalisation and search keys of directory entries (issue 5 item 2): pure functions.

Both the index and the queries go through :func:`normalise`, in Python, so SQLite (FTS5)
and PostgreSQL (``to_tsvector('simple', …)``) see the same words and give the same results:
"Hélène" = "helene" = "HELENE", "Saint-Étienne" = "saint etienne". A normalised text holds
only ``[a-z]+`` and ``[0-9]+`` words separated by one space, which both engines split
identically (non-Latin letters are dropped: the directory is written in Latin script).

Small typos are handled the same way on both engines: the one-edit variants of a query word
(:func:`one_edit_variants`) are looked up in the vocabulary of the snapshot, and the words
found become alternatives of the query word. No database extension is needed.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from mssante.domain.directory import DirectoryEntry

# Letters NFKD does not decompose (French names: Œ, Æ; a few foreign ones).
_FOLD = str.maketrans(
    {
        "œ": "oe",
        "æ": "ae",
        "ß": "ss",
        "ø": "o",
        "đ": "d",
        "ð": "d",
        "ł": "l",
        "ı": "i",
        "þ": "th",
    }
)
_NOT_WORD = re.compile(r"[^a-z0-9]+")
# Letters and digits never share a word: PostgreSQL's parser reads "3e4x" as a number then
# a word, FTS5 as one word; "dupont2" is indexed as "dupont 2" on both.
_LETTER_DIGIT = re.compile(r"(?<=[a-z])(?=[0-9])|(?<=[0-9])(?=[a-z])")
_HAS_DIGIT = re.compile(r"[0-9]")
_LETTERS = string.ascii_lowercase

TYPO_MIN_LENGTH = 5  # one edit is tolerated on query words of at least 5 letters
VOCABULARY_MIN_LENGTH = TYPO_MIN_LENGTH - 1  # a one-edit variant of such a word
MAX_QUERY_WORDS = 8


@lru_cache(maxsize=100_000)  # an import normalises the same cities and labels many times
def normalise(text: str) -> str:
    """Lower-case ``[a-z0-9]`` words separated by one space (accents and punctuation gone)."""
    if not text:
        return ""
    if not text.isascii():
        decomposed = unicodedata.normalize("NFKD", text.lower())
        text = "".join(c for c in decomposed if not unicodedata.combining(c)).translate(_FOLD)
    cleaned = _NOT_WORD.sub(" ", text.lower()).strip()
    return _LETTER_DIGIT.sub(" ", cleaned) if _HAS_DIGIT.search(cleaned) else cleaned


def words(text: str) -> list[str]:
    return normalise(text).split()


def one_edit_variants(word: str) -> set[str]:
    """Every word at Damerau-Levenshtein distance 1 (a-z alphabet), without ``word``."""
    splits = [(word[:i], word[i:]) for i in range(len(word) + 1)]
    variants = {a + b[1:] for a, b in splits if b}
    variants |= {a + b[1] + b[0] + b[2:] for a, b in splits if len(b) > 1}
    variants |= {a + c + b[1:] for a, b in splits if b for c in _LETTERS}
    variants |= {a + c + b for a, b in splits for c in _LETTERS}
    variants.discard(word)
    return variants


def typo_candidates(word: str) -> set[str]:
    """The variants worth looking up for ``word`` (only letters, at least 5 of them)."""
    if len(word) < TYPO_MIN_LENGTH or not word.isalpha():
        return set()
    return {v for v in one_edit_variants(word) if len(v) >= VOCABULARY_MIN_LENGTH}


@dataclass(frozen=True, slots=True)
class QueryWord:
    """One word of a query: matched exactly, or as a prefix, or through a typo variant."""

    word: str
    prefix: bool


def parse_query(query: str, *, prefix_all: bool) -> list[QueryWord]:
    """The words of a query: every word a prefix (search) or only the last one (suggest)."""
    found: list[str] = []
    for word in words(query):
        if word not in found:
            found.append(word)
    found = found[:MAX_QUERY_WORDS]
    return [QueryWord(w, prefix_all or i == len(found) - 1) for i, w in enumerate(found)]


def padded(parts: Iterable[str]) -> str:
    """`` w1 w2 … `` (spaces around every word, so LIKE '% w %' finds whole words)."""
    joined = " ".join(p for p in (normalise(x) for x in parts) if p)
    return f" {joined} " if joined else " "


def departement_of_postcode(postcode: str) -> str:
    """The département code of a French postcode ("75013" → "75", "97411" → "974",
    "20090" → "2A", "20200" → "2B"); "" when not a French postcode."""
    code = postcode.strip()
    if len(code) != 5 or not code.isdigit():
        return ""
    if code.startswith("97") or code.startswith("98"):
        return code[:3]
    if code.startswith("20"):
        return "2A" if code < "20200" else "2B"
    return code[:2]


@dataclass(frozen=True, slots=True)
class SearchKeys:
    """What the search index stores for one entry (see storage/schema_directory_search)."""

    k_name: str  # family name (PER) or structure name (other types), padded words
    k_given: str  # given name, padded words
    k_org: str  # structure, trade name and service, padded words
    k_city: str  # city without postcode, normalised
    k_profession: str  # profession and savoir-faire labels, padded words
    dept_code: str  # département code (from the postcode when not given)
    sort_name: str  # tie-break: family + given name, or structure name
    doc: str  # every searchable word, padded


def vocabulary(doc: str) -> set[str]:
    """The words of a document where typo variants are looked up (letters only, 4+)."""
    return {w for w in doc.split() if len(w) >= VOCABULARY_MIN_LENGTH and w.isalpha()}


def display_name(entry: DirectoryEntry) -> str:
    """How a BAL is named in a result list: "Hélène DUPONT", or the structure/service."""
    person = " ".join(p for p in (entry.given_name.strip(), entry.family_name.strip()) if p)
    if person:
        return person
    for candidate in (entry.org_trade_name, entry.org_name, entry.service, entry.description):
        if candidate.strip():
            name = candidate.strip()
            service = entry.service.strip()
            return f"{name} — {service}" if service and service != name else name
    return entry.address


def search_keys(entry: DirectoryEntry) -> SearchKeys:
    """The search keys of one entry (fields of issue 5 item 2)."""
    person = bool(entry.family_name.strip() or entry.given_name.strip())
    structure = (entry.org_name, entry.org_trade_name)
    name_parts = [entry.family_name] if person else [*structure, entry.service]
    k_name = padded(name_parts)
    k_given = padded([entry.given_name])
    k_org = padded([*structure, entry.service])
    k_profession = padded([entry.profession_label, entry.skill_label])
    dept = entry.departement.strip().upper()
    dept_code = dept if 0 < len(dept) <= 3 else departement_of_postcode(entry.postcode)
    local, _, domain = entry.address.partition("@")
    doc = padded(
        [
            entry.family_name,
            entry.given_name,
            *structure,
            entry.service,
            entry.profession_label,
            entry.skill_label,
            entry.city_line,
            entry.postcode,
            entry.departement,
            dept_code,
            local,
            domain,
            entry.street_name,
            entry.locality,
        ]
    )
    sort_name = " ".join(
        normalise(p) for p in ([entry.family_name, entry.given_name] if person else name_parts)
    ).strip()
    return SearchKeys(
        k_name=k_name,
        k_given=k_given,
        k_org=k_org,
        k_city=normalise(entry.city),
        k_profession=k_profession,
        dept_code=dept_code,
        sort_name=sort_name or normalise(entry.address),
        doc=doc,
    )
