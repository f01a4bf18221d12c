"""IHE XDM packages, the ``IHE_XDM.ZIP`` attachment of MSSanté document mails (SPEC §7.1).

Layout written by ``build_xdm`` (R37; OpenXtrem / CI-SIS practice)::

    README.TXT                      French layout: Emetteur / Application de l'emetteur /
                                    Instructions / Arborescence (as the DRIMbox sample)
    INDEX.HTM                       links to the content, every text HTML-escaped
    IHE_XDM/SUBSET01/METADATA.XML   ebRIM 3.0 SubmitObjectsRequest (``xdm_metadata``)
    IHE_XDM/SUBSET01/DOC0001.XML    the documents, ISO 9660 8.3 upper-case names; the URI,
                                    SHA-1 ``hash`` and ``size`` slots are computed here

``read_xdm`` (R36) reads through ``safezip.read_zip`` (hostile archives refused as a whole,
see there) and ``xdm_metadata.parse_metadata`` (hostile XML refused), finds every document by
its ``URI`` and checks hash, size and, through an injected ``code_checker``, the codes (R38:
the value sets live elsewhere). It is pure: bytes in, objects out, nothing written anywhere.

Strict mode reports any departure from that layout as a problem. Lenient mode reads the
variants seen in the wild and lists them as warnings: a top folder around the package and
lower-case names (the Direct Project sample), a subset folder other than ``SUBSETnn``, URIs
that repeat the subset folder and a SOAP-wrapped METADATA.XML (the DRIMbox sample), a missing
URI (the document is then found by its entry id). Hash and size mismatches, unknown URIs and
codes outside their value set are problems in both modes.
"""

from __future__ import annotations

import hashlib
import html
import re
from dataclasses import dataclass, field, replace

from mssante.formats.safezip import (
    DEFAULT_LIMITS,
    UnsafeArchive,
    ZipLimits,
    is_archive,
    read_zip,
    write_zip,
)
from mssante.formats.xdm_metadata import (
    DEFAULT_XML_LIMITS,
    INS_OIDS,
    Association,
    Author,
    CodeChecker,
    DocumentEntry,
    Findings,
    MetadataError,
    Problem,
    SubmissionSet,
    XmlLimits,
    build_metadata,
    parse_metadata,
    parse_patient_id,
)

__all__ = [
    "REFUSALS",
    "XDM_ATTACHMENT_NAME",
    "XdmDocument",
    "XdmDocumentInput",
    "XdmError",
    "XdmPackage",
    "author_for_mailbox",
    "build_xdm",
    "document_file_name",
    "find_xdm_attachment",
    "read_xdm",
    "validate_xdm",
]

XDM_ATTACHMENT_NAME = "IHE_XDM.ZIP"
SUBSET = "SUBSET01"
IDNAT_PS_OID = "1.2.250.1.71.4.2.1"
IDNAT_STRUCT_OID = "1.2.250.1.71.4.2.2"
_NAME_83 = re.compile(r"[A-Z0-9_]{1,8}(?:\.[A-Z0-9_]{1,3})?")
_SUBSET_NAME = re.compile(r"SUBSET[0-9]{2}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
_EXTENSIONS = {
    "text/xml": "XML",
    "application/xml": "XML",
    "application/hl7-v3+xml": "XML",
    "application/hl7-cda+xml": "XML",
    "application/pdf": "PDF",
    "text/plain": "TXT",
    "text/html": "HTM",
    "text/rtf": "RTF",
    "application/rtf": "RTF",
    "application/dicom": "DCM",
    "image/jpeg": "JPG",
    "image/png": "PNG",
    "image/tiff": "TIF",
    "application/json": "JSN",
    "application/fhir+json": "JSN",
}


class XdmError(MetadataError):
    """The package cannot be read: no METADATA.XML, or an unusable layout."""


REFUSALS = (UnsafeArchive, MetadataError)
"""Everything ``read_xdm`` raises on a package it will not read (``except REFUSALS``)."""


@dataclass(frozen=True)
class XdmDocumentInput:
    content: bytes
    mime_type: str
    entry: DocumentEntry  # hash, size, URI and an empty entry_id are filled in by build_xdm


@dataclass(frozen=True)
class XdmDocument:
    entry: DocumentEntry
    content: bytes
    path: str  # the member path inside the zip


@dataclass(frozen=True)
class XdmPackage:
    submission: SubmissionSet
    documents: list[XdmDocument]
    associations: list[Association]
    warnings: list[Problem] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    subset_path: str = f"IHE_XDM/{SUBSET}"

    @property
    def ok(self) -> bool:
        return not self.problems


def find_xdm_attachment(filename: str | None) -> bool:
    """Whether a mail attachment is an XDM package: ``IHE_XDM.ZIP`` in any case (R36)."""
    return filename is not None and filename.strip().upper() == XDM_ATTACHMENT_NAME


def document_file_name(index: int, mime_type: str) -> str:
    """The 8.3 upper-case name of the ``index``-th document (1-based): ``DOC0001.XML``."""
    if not 1 <= index <= 9999:
        raise ValueError("an XDM subset holds at most 9999 documents")
    base = mime_type.split(";", 1)[0].strip().lower()
    return f"DOC{index:04d}.{_EXTENSIONS.get(base, 'BIN')}"


def _hl7(text: str) -> str:
    """HL7 v2 escaping of a component value."""
    for char, escape in (("\\", "\\E\\"), ("|", "\\F\\"), ("^", "\\S\\"), ("&", "\\T\\")):
        text = text.replace(char, escape)
    return text.replace("~", "\\R\\")


def author_for_mailbox(
    address: str,
    *,
    idnat_ps: str = "",
    family: str = "",
    given: str = "",
    institution: str = "",
    idnat_struct: str = "",
    roles: tuple[str, ...] = (),
    specialties: tuple[str, ...] = (),
) -> Author:
    """The XDS author of the sending BAL: its address as ``authorTelecommunication``
    (``^^Internet^<address>``); its owner as XCN (a professional by idNat_PS) and/or XON
    (the structure by idNat_Struct), in the form of the DRIMbox sample."""
    person = ""
    if idnat_ps:
        person = f"{idnat_ps}^{_hl7(family)}^{_hl7(given)}^^^^^^&{IDNAT_PS_OID}&ISO^D^^^IDNPS"
    institutions: tuple[str, ...] = ()
    if institution or idnat_struct:
        suffix = f"&{IDNAT_STRUCT_OID}&ISO^IDNST^^^{idnat_struct}" if idnat_struct else ""
        institutions = (f"{_hl7(institution)}^^^^^{suffix}".rstrip("^"),)
    return Author(person, institutions, roles, specialties, (f"^^Internet^{address}",))


def _line(text: str) -> str:
    return _CONTROL.sub(" ", text).strip()


def _readme(
    sender: list[tuple[str, str]], software: list[tuple[str, str]], files: list[str]
) -> str:
    def block(title: str, underline: int, items: list[tuple[str, str]]) -> list[str]:
        return [f"{title} :", "=" * underline, *(f"    . {k} : {_line(v)}" for k, v in items if v)]

    tree = ["     README.TXT", "     INDEX.HTM", "     IHE_XDM", f"          {SUBSET}"]
    tree += [f"               {name}" for name in ["METADATA.XML", *files]]
    lines = [
        *block("Emetteur", 13, sender),
        "",
        *block("Application de l'emetteur", 25, software),
        "",
        "Instructions :",
        "=" * 13,
        ". Consultez les fichiers reçus par messagerie securisee de sante dans votre logiciel"
        " de professionnel de sante.",
        "",
        "Arborescence :",
        "=" * 12,
        *tree,
    ]
    return "\n".join(lines) + "\n"


def _index(sender: str, documents: list[tuple[str, DocumentEntry]]) -> str:
    e = html.escape
    items = [
        '<li><a href="README.TXT">README.TXT</a> : informations sur l\'émetteur</li>',
        f'<li><a href="IHE_XDM/{SUBSET}/METADATA.XML">IHE_XDM/{SUBSET}/METADATA.XML</a>'
        " : métadonnées XDS</li>",
    ]
    for name, entry in documents:
        label = entry.title or (entry.type_code.display if entry.type_code else "") or name
        items.append(f'<li><a href="IHE_XDM/{SUBSET}/{name}">{name}</a> : {e(label)}</li>')
    return (
        '<!DOCTYPE html>\n<html lang="fr">\n<head><meta charset="utf-8">'
        "<title>Archive IHE XDM</title></head>\n<body>\n<h1>Archive IHE XDM</h1>\n"
        f"<p>Emetteur : {e(_line(sender))}</p>\n<ul>\n" + "\n".join(items) + "\n</ul>\n"
        "</body>\n</html>\n"
    )


def build_xdm(
    submission: SubmissionSet,
    documents: list[XdmDocumentInput],
    *,
    sender_name: str,
    sender_software: str,
    sender_organisation: str = "",
    sender_address: str = "",
    software_version: str = "",
    software_publisher: str = "",
) -> bytes:
    """The bytes of an ``IHE_XDM.ZIP`` holding ``documents`` under ``submission`` (R37).

    Each entry gets its URI (``DOC0001.XML``…), SHA-1 ``hash``, ``size``, the input's MIME
    type, and ``Document01``… as id when it has none. ``ValueError`` if there is no document,
    the patient is not an INS (R43), an entry's patient is not the submission's, a document
    is itself an archive (``read_zip`` refuses nested archives) or a required code is missing.
    """
    if not documents:
        raise ValueError("an XDM package needs at least one document")
    patient = parse_patient_id(submission.patient_id)
    if patient is None or patient[1] not in INS_OIDS:
        raise ValueError(f"patientId {submission.patient_id!r} is not <INS>^^^&<INS OID>&ISO")
    entries: list[DocumentEntry] = []
    files: list[tuple[str, bytes]] = []
    for index, doc in enumerate(documents, start=1):
        if doc.entry.patient_id != submission.patient_id:
            raise ValueError(f"document {index}: patientId differs from the submission set's")
        if is_archive(doc.content):
            raise ValueError(f"document {index} is itself an archive, which readers refuse")
        name = document_file_name(index, doc.mime_type)
        entries.append(
            replace(
                doc.entry,
                entry_id=doc.entry.entry_id or f"Document{index:02d}",
                mime_type=doc.mime_type,
                hash=hashlib.sha1(doc.content, usedforsecurity=False).hexdigest(),
                size=len(doc.content),
                uri=name,
            )
        )
        files.append((f"IHE_XDM/{SUBSET}/{name}", doc.content))
    metadata = build_metadata(submission, entries)
    sender = [
        ("Nom", sender_name),
        ("Organisme", sender_organisation),
        ("Adresse de messagerie", sender_address),
    ]
    software = [
        ("Nom", sender_software),
        ("Version", software_version),
        ("Editeur", software_publisher),
    ]
    names = [path.rsplit("/", 1)[1] for path, _ in files]
    readme = _readme(sender, software, names)
    index_page = _index(sender_organisation or sender_name, list(zip(names, entries, strict=True)))
    return write_zip(
        [
            ("README.TXT", readme.encode()),
            ("INDEX.HTM", index_page.encode()),
            (f"IHE_XDM/{SUBSET}/METADATA.XML", metadata),
            *files,
        ]
    )


# ----------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class _Layout:
    prefix: str  # "" or "top/"
    subset: str  # the subset folder name as found
    metadata: str  # the member path of METADATA.XML

    @property
    def ihe(self) -> str:
        return self.metadata.rsplit("/", 2)[0]

    @property
    def subset_dir(self) -> str:
        return self.metadata.rsplit("/", 1)[0]


def _layout(members: dict[str, bytes], f: Findings) -> _Layout:
    found = [
        p.split("/")
        for p in members
        if p.count("/") >= 2
        and p.rsplit("/", 1)[1].upper() == "METADATA.XML"
        and p.split("/")[-3].upper() == "IHE_XDM"
    ]
    prefixes = {"/".join(parts[:-3]) for parts in found}
    if not found or len(prefixes) > 1 or any(parts[:-3][1:] for parts in found):
        where = ", ".join(sorted("/".join(parts) for parts in found)) or "none"
        raise XdmError("missing-metadata", f"no single IHE_XDM/<subset>/METADATA.XML ({where})")
    prefix = prefixes.pop()
    if prefix:
        f.deviation("top-folder", f"the package sits in a top folder {prefix!r}", prefix + "/")
        prefix += "/"
    found.sort(key=lambda parts: (parts[-2].upper() != SUBSET, parts[-2]))
    chosen = found[0]
    if len(found) > 1:
        others = ", ".join(parts[-2] for parts in found[1:])
        f.problem("multiple-subsets", f"only {chosen[-2]} read; ignored: {others}")
    if not _SUBSET_NAME.fullmatch(chosen[-2].upper()):
        f.deviation("subset-name", f"subset folder {chosen[-2]!r} is not SUBSETnn", chosen[-2])
    return _Layout(prefix, chosen[-2], "/".join(chosen))


def _bad_uri(uri: str) -> bool:
    parts = uri.replace("\\", "/").split("/")
    return uri.startswith(("/", "\\")) or ":" in uri or any(p in ("", ".", "..") for p in parts)


class _Resolver:
    def __init__(self, members: dict[str, bytes], layout: _Layout, f: Findings) -> None:
        self.members = members
        self.by_key = {p.casefold(): p for p in members}
        self.layout = layout
        self.f = f

    def lookup(self, path: str, entry_id: str, how: str) -> str | None:
        if path in self.members:
            return path
        if (found := self.by_key.get(path.casefold())) is not None:
            self.f.deviation(
                "uri-case", f"URI {how} matches {found!r} only ignoring case", entry_id
            )
        return found

    def resolve(self, entry: DocumentEntry) -> str | None:
        eid, subset_dir = entry.entry_id, self.layout.subset_dir
        if entry.uri is None:
            stem = eid.casefold()
            folder = subset_dir.casefold() + "/"
            hits = [
                p
                for key, p in self.by_key.items()
                if key.startswith(folder) and key[len(folder) :].rsplit(".", 1)[0] == stem
            ]
            found = hits[0] if len(hits) == 1 else None
            self.f.deviation("uri-missing", f"no URI slot; found by entry id: {found}", eid)
            return found
        if _bad_uri(entry.uri):
            self.f.problem("bad-uri", f"URI {entry.uri!r} is not a plain relative name", eid)
            return None
        found = self.lookup(f"{subset_dir}/{entry.uri}", eid, repr(entry.uri))
        first = entry.uri.split("/", 1)[0]
        if found is None and "/" in entry.uri and first.casefold() == self.layout.subset.casefold():
            found = self.lookup(f"{self.layout.ihe}/{entry.uri}", eid, repr(entry.uri))
            if found is not None:
                self.f.deviation(
                    "uri-includes-subset", f"URI {entry.uri!r} repeats the subset folder", eid
                )
        if found is None:
            self.f.problem("document-not-found", f"URI {entry.uri!r} is not in {subset_dir}/", eid)
        return found


def _check_document(entry: DocumentEntry, path: str, content: bytes, f: Findings) -> None:
    eid = entry.entry_id
    digest = hashlib.sha1(content, usedforsecurity=False).hexdigest()
    if entry.hash is None:
        f.deviation("hash-missing", f"no hash slot for {path}", eid)
    elif entry.hash.lower() != digest:
        f.problem("hash-mismatch", f"{path}: SHA-1 {digest}, metadata says {entry.hash}", eid)
    if entry.size is None:
        f.deviation("size-missing", f"no size slot for {path}", eid)
    elif entry.size != len(content):
        f.problem("size-mismatch", f"{path}: {len(content)} bytes, metadata says {entry.size}", eid)


def _check_names(members: dict[str, bytes], layout: _Layout, used: set[str], f: Findings) -> None:
    present = {p.casefold() for p in members}
    expected = {f"{layout.prefix}README.TXT".casefold(), f"{layout.prefix}INDEX.HTM".casefold()}
    for name, code in (("README.TXT", "missing-readme"), ("INDEX.HTM", "missing-index")):
        if f"{layout.prefix}{name}".casefold() not in present:
            f.deviation(code, f"no {name}", layout.prefix + name)
    for path in members:
        relative = path[len(layout.prefix) :]
        if not all(_NAME_83.fullmatch(part) for part in relative.split("/")):
            f.deviation("file-name", f"{relative!r} is not an ISO 9660 8.3 upper-case name", path)
        if path.casefold() in expected or path in used or path == layout.metadata:
            continue
        if path.rsplit("/", 1)[0] == layout.subset_dir:
            f.warn("unreferenced-file", f"{path} is not described in METADATA.XML", path)
        else:
            f.warn("unexpected-file", f"{path} is outside the XDM layout", path)


def read_xdm(
    data: bytes,
    *,
    lenient: bool = False,
    limits: ZipLimits = DEFAULT_LIMITS,
    xml_limits: XmlLimits = DEFAULT_XML_LIMITS,
    code_checker: CodeChecker | None = None,
) -> XdmPackage:
    """Read an ``IHE_XDM.ZIP``: the submission set and each document found by its URI.

    Raises ``UnsafeArchive`` (hostile zip), ``UnsafeXml`` (hostile METADATA.XML) or
    ``MetadataError``/``XdmError`` (no usable metadata); see ``REFUSALS``. Otherwise the
    package lists its ``warnings`` and ``problems`` (``ok`` when there is none).
    """
    members = read_zip(data, limits)
    f = Findings(lenient)
    layout = _layout(members, f)
    metadata = parse_metadata(members[layout.metadata], lenient=lenient, limits=xml_limits)
    f.warnings += metadata.warnings
    f.problems += metadata.problems
    resolver = _Resolver(members, layout, f)
    documents: list[XdmDocument] = []
    used: set[str] = set()
    for entry in metadata.documents:
        path = resolver.resolve(entry)
        if path is None:
            continue
        if path in used:
            f.problem("duplicate-uri", f"{path} is described twice", entry.entry_id)
        used.add(path)
        _check_document(entry, path, members[path], f)
        documents.append(XdmDocument(entry, members[path], path))
    _check_names(members, layout, used, f)
    if code_checker is not None:
        sub = metadata.submission
        checks = [(sub.entry_id, "contentTypeCode", sub.content_type_code)]
        checks += [(e.entry_id, slot, c) for e in metadata.documents for slot, c in e.codes()]
        for where, slot, code in checks:
            if code is not None and (why := code_checker(slot, code)) is not None:
                f.problem(
                    "code-not-in-value-set", f"{slot} {code.code} ({code.scheme}): {why}", where
                )
    return XdmPackage(
        submission=metadata.submission,
        documents=documents,
        associations=list(metadata.associations),
        warnings=f.warnings,
        problems=f.problems,
        subset_path=layout.subset_dir,
    )


def validate_xdm(
    data: bytes,
    *,
    lenient: bool = False,
    limits: ZipLimits = DEFAULT_LIMITS,
    xml_limits: XmlLimits = DEFAULT_XML_LIMITS,
    code_checker: CodeChecker | None = None,
) -> list[Problem]:
    """Every problem of a package, a refusal included (as one problem with its reason code)."""
    try:
        package = read_xdm(
            data, lenient=lenient, limits=limits, xml_limits=xml_limits, code_checker=code_checker
        )
    except REFUSALS as exc:
        return [Problem(exc.reason_code, exc.message, getattr(exc, "member", None) or "")]
    return package.problems
