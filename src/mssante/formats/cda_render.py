"""A safe HTML rendering of any CDA R2 document, for people (issue 6 item 8).

Everything from the document is escaped text. The only markup produced is ours: each CDA
narrative element (NarrativeBlock.xsd) maps to a fixed HTML element, and no attribute of the
document is copied except ``colspan``/``rowspan`` (digits) and ``styleCode`` tokens turned into
our own class names. Links are kept only for ``http``/``https`` URLs, with
``rel="noopener noreferrer"``, and their URL is displayed next to them. ``script``/``style``
elements and anything outside the CDA namespace lose their markup (script/style lose their
content too). Images (``renderMultiMedia`` → ``observationMedia`` PNG/JPEG/GIF) become ``data:``
URLs; an embedded PDF is offered as a ``data:application/pdf`` download link (``embed_pdf=False``
replaces it with a note; a CLI can extract it with ``cda.extract_embedded_pdf``).
The page carries a strict CSP: ``default-src 'none'; style-src 'unsafe-inline'; img-src data:``.
"""

from __future__ import annotations

import base64
import binascii
import re
from html import escape
from urllib.parse import urlsplit

from lxml import etree

from mssante.formats.cda import (
    CDA_NS,
    DEFAULT_MAX_BYTES,
    Author,
    CdaHeader,
    Organisation,
    extract_header,
    parse_cda,
)

__all__ = ["CSP", "MAX_DEPTH", "render_html"]

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
MAX_DEPTH = 64
_C = f"{{{CDA_NS}}}"
_NS = {"cda": CDA_NS}
_SIMPLE = {
    "paragraph": "p",
    "sub": "sub",
    "sup": "sup",
    "item": "li",
    "thead": "thead",
    "tbody": "tbody",
    "tfoot": "tfoot",
    "tr": "tr",
    "th": "th",
    "td": "td",
    "colgroup": "colgroup",
    "content": "span",
}
_STYLE_CLASSES = {
    "bold": "cda-bold",
    "italics": "cda-italic",
    "underline": "cda-underline",
    "emphasis": "cda-em",
}
_DROP = {"script", "style", "iframe", "object", "embed"}
_IMAGE_TYPES = {"image/png", "image/jpeg", "image/gif"}
_SEX = {"M": "Masculin", "F": "Féminin", "U": "Inconnu", "I": "Indéterminé"}
_TS = re.compile(r"^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?")
_PAGE_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5rem auto;max-width:60rem;color:#1b1b1b}
h1{font-size:1.5rem;margin-bottom:.5rem}
table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #bbb;padding:.2rem .4rem}
dl.cda-header{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem}
dl.cda-header dt{font-weight:600}section.cda-section{margin:1rem 0 1rem .5rem}
.cda-bold{font-weight:700}.cda-italic{font-style:italic}.cda-underline{text-decoration:underline}
.cda-em{font-style:italic;font-weight:600}.cda-url{color:#555;font-size:.9em}
.cda-note{color:#555}img.cda-media{max-width:100%}
"""


def _ts(value: str | None) -> str:
    match = _TS.match(value or "")
    if match is None:
        return ""
    year, month, day, hour, minute = match.groups()
    if not month or not day:
        return f"{month + '/' if month else ''}{year}"
    text = f"{day}/{month}/{year}"
    return f"{text} {hour}:{minute or '00'}" if hour else text


def _e(value: object) -> str:
    return escape("" if value is None else str(value), quote=True)


def _local(el: etree._Element) -> str | None:
    """The local name of a CDA-namespace element, else None (foreign or not an element)."""
    if not isinstance(el.tag, str):
        return None
    qname = etree.QName(el)
    return qname.localname if qname.namespace == CDA_NS else None


def _safe_url(url: str) -> str | None:
    url = url.strip()
    if not url or any(ord(ch) < 33 or ch in "\"'<>`\\" for ch in url):
        return None
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    return url


def _b64(el: etree._Element | None) -> bytes | None:
    if el is None or el.get("representation") != "B64" or el.get("compression"):
        return None
    try:
        return base64.b64decode("".join("".join(el.itertext()).split()), validate=True)
    except (binascii.Error, ValueError):
        return None


class _Renderer:
    def __init__(self, root: etree._Element, embed_pdf: bool) -> None:
        self.root = root
        self.embed_pdf = embed_pdf
        self.media: dict[str, etree._Element] = {}
        for media in root.iter(_C + "observationMedia"):
            media_id = media.get("ID")
            value = media.find("cda:value", _NS)
            if media_id and value is not None:
                self.media.setdefault(media_id, value)

    # -- narrative block --
    def children(self, el: etree._Element, out: list[str], depth: int) -> None:
        if el.text:
            out.append(_e(el.text))
        for child in el:
            if isinstance(child.tag, str):
                self.node(child, out, depth + 1)
            if child.tail:
                out.append(_e(child.tail))

    def node(self, el: etree._Element, out: list[str], depth: int) -> None:
        name = _local(el)
        raw = etree.QName(el).localname.lower() if isinstance(el.tag, str) else ""
        if raw in _DROP:
            return
        if depth > MAX_DEPTH:
            out.append(_e(" ".join("".join(el.itertext()).split())))
            return
        if name is None:
            self.children(el, out, depth)
            return
        if name == "br":
            out.append("<br>")
        elif name == "linkHtml":
            self.link(el, out, depth)
        elif name == "renderMultiMedia":
            self.multimedia(el, out, depth)
        elif name == "list":
            tag = "ol" if el.get("listType") == "ordered" else "ul"
            for caption in el.findall("cda:caption", _NS):
                out.append('<p class="cda-caption">')
                self.children(caption, out, depth)
                out.append("</p>")
            out.append(f"<{tag}>")
            for item in el.findall("cda:item", _NS):
                self.node(item, out, depth + 1)
            out.append(f"</{tag}>")
        elif name == "table":
            out.append("<table>")
            self.children(el, out, depth)
            out.append("</table>")
        elif name == "caption":
            parent = el.getparent()
            tag = "caption" if parent is not None and _local(parent) == "table" else "span"
            out.append(f"<{tag}>")
            self.children(el, out, depth)
            out.append(f"</{tag}>")
        elif name == "col":
            span = el.get("span", "")
            out.append(f'<col span="{span}">' if span.isdigit() and int(span) < 1000 else "<col>")
        elif name in ("footnote", "footnoteRef"):
            out.append('<sup class="cda-note">[')
            self.children(el, out, depth)
            out.append("]</sup>")
        elif name in _SIMPLE:
            tag = _SIMPLE[name]
            out.append(f"<{tag}{self.attrs(el, tag)}>")
            self.children(el, out, depth)
            out.append(f"</{tag}>")
        else:
            self.children(el, out, depth)

    @staticmethod
    def attrs(el: etree._Element, tag: str) -> str:
        parts = []
        if tag in ("td", "th"):
            for attr in ("colspan", "rowspan"):
                value = el.get(attr, "")
                if value.isdigit() and 0 < int(value) < 1000:
                    parts.append(f' {attr}="{value}"')
        classes = [
            _STYLE_CLASSES[t.lower()]
            for t in (el.get("styleCode") or "").split()
            if t.lower() in _STYLE_CLASSES
        ]
        if classes:
            parts.append(f' class="{" ".join(dict.fromkeys(classes))}"')
        return "".join(parts)

    def link(self, el: etree._Element, out: list[str], depth: int) -> None:
        url = _safe_url(el.get("href") or "")
        if url is None:
            out.append("<span>")
            self.children(el, out, depth)
            out.append("</span>")
            if el.get("href"):
                out.append(
                    f' <span class="cda-url">(lien non affiché : {_e(el.get("href"))})</span>'
                )
            return
        out.append(f'<a href="{_e(url)}" rel="noopener noreferrer" target="_blank">')
        self.children(el, out, depth)
        out.append(f'</a> <span class="cda-url">({_e(url)})</span>')

    def multimedia(self, el: etree._Element, out: list[str], depth: int) -> None:
        for ref in (el.get("referencedObject") or "").split():
            value = self.media.get(ref)
            media_type = value.get("mediaType", "") if value is not None else ""
            data = _b64(value)
            if data is not None and media_type in _IMAGE_TYPES:
                encoded = base64.b64encode(data).decode("ascii")
                out.append(
                    f'<img class="cda-media" alt="image" src="data:{media_type};base64,{encoded}">'
                )
            elif data is not None and media_type == "application/pdf":
                self.pdf_link(data, out)
            else:
                out.append(f'<span class="cda-note">[média non affiché : {_e(media_type)}]</span>')
        for caption in el.findall("cda:caption", _NS):
            self.children(caption, out, depth)

    def pdf_link(self, pdf: bytes, out: list[str]) -> None:
        size = f"{(len(pdf) + 1023) // 1024} Ko"
        if not self.embed_pdf or not pdf.startswith(b"%PDF-"):
            out.append(
                f'<p class="cda-note">Document PDF joint ({size}), non inclus dans cette page.</p>'
            )
            return
        encoded = base64.b64encode(pdf).decode("ascii")
        out.append(
            f'<p><a download="document.pdf" href="data:application/pdf;base64,{encoded}">'
            f"Télécharger le document PDF ({size})</a></p>"
        )

    # -- body --
    def section(self, section: etree._Element, out: list[str], level: int) -> None:
        tag = f"h{min(level, 6)}"
        out.append('<section class="cda-section">')
        title = section.find("cda:title", _NS)
        code = section.find("cda:code", _NS)
        label = " ".join("".join(title.itertext()).split()) if title is not None else ""
        label = label or (code.get("displayName", "") if code is not None else "")
        if label:
            out.append(f"<{tag}>{_e(label)}</{tag}>")
        text = section.find("cda:text", _NS)
        if text is not None:
            out.append('<div class="cda-narrative">')
            self.children(text, out, 0)
            out.append("</div>")
        if level < 20:
            for sub in section.findall("cda:component/cda:section", _NS):
                self.section(sub, out, level + 1)
        out.append("</section>")

    def body(self, out: list[str]) -> None:
        for section in self.root.findall(
            "cda:component/cda:structuredBody/cda:component/cda:section", _NS
        ):
            self.section(section, out, 2)
        for text in self.root.findall("cda:component/cda:nonXMLBody/cda:text", _NS):
            media_type = text.get("mediaType", "")
            data = _b64(text)
            if media_type == "application/pdf" and data is not None:
                self.pdf_link(data, out)
            elif media_type == "text/plain":
                plain = (
                    data.decode("utf-8", "replace")
                    if data is not None
                    else "".join(text.itertext())
                )
                out.append(f"<pre>{_e(plain)}</pre>")
            else:
                out.append(f'<p class="cda-note">Contenu non affiché ({_e(media_type)}).</p>')


def _row(out: list[str], label: str, value: str | None) -> None:
    if value:
        out.append(f"<dt>{_e(label)}</dt><dd>{_e(value)}</dd>")


def _org(org: Organisation | None) -> str | None:
    if org is None:
        return None
    ident = f" ({org.id.extension or org.id.root})" if org.id is not None else ""
    return f"{org.name or ''}{ident}".strip() or None


def _person(person: Author | None) -> str | None:
    if person is None:
        return None
    label = person.display_name
    if person.id_nat_ps:
        label += f" (idNat_PS {person.id_nat_ps})"
    return label.strip() or None


def _header(header: CdaHeader, out: list[str]) -> None:
    out.append(f'<h1>{_e(header.title or "Document CDA")}</h1><dl class="cda-header">')
    patient = header.patient
    if patient is not None:
        names = [patient.birth_family, patient.first_given]
        used = " ".join(n for n in (patient.used_family, patient.used_given) if n)
        name = " ".join(n for n in names if n)
        if used and used != name:
            name += f" (nom utilisé : {used})"
        _row(out, "Patient", name)
        _row(out, "Né(e) le", _ts(patient.birth_time))
        _row(out, "Sexe", _SEX.get(patient.sex or "", patient.sex))
        if patient.ins:
            _row(out, "INS", f"{patient.ins} ({patient.ins_kind})")
    code = header.code
    if code is not None:
        _row(out, "Document", f"{code.display_name or ''} ({code.code})".strip())
    _row(out, "Date du document", _ts(header.effective_time))
    author = header.author
    _row(out, "Auteur", _person(author))
    if author is not None:
        _row(out, "Date de rédaction", _ts(author.time))
        _row(out, "Organisation de l'auteur", _org(author.organisation))
    _row(out, "Établissement", _org(header.custodian))
    _row(out, "Responsable", _person(header.legal_authenticator))
    if header.service_start or header.service_end:
        _row(
            out,
            "Acte",
            " – ".join(t for t in (_ts(header.service_start), _ts(header.service_end)) if t),
        )
    if header.encounter_start:
        _row(
            out,
            "Prise en charge",
            " – ".join(t for t in (_ts(header.encounter_start), _ts(header.encounter_end)) if t),
        )
    if header.confidentiality_code is not None:
        conf = header.confidentiality_code
        _row(out, "Confidentialité", conf.display_name or conf.code)
    if header.document_id is not None:
        doc_id = header.document_id
        _row(
            out, "Identifiant", f"{doc_id.root}{'^' + doc_id.extension if doc_id.extension else ''}"
        )
    if header.version_number is not None:
        _row(out, "Version", str(header.version_number))
    out.append("</dl>")


def render_html(
    cda_bytes: bytes, *, embed_pdf: bool = True, max_bytes: int = DEFAULT_MAX_BYTES
) -> str:
    """A complete, self-contained HTML page for a CDA document (raises CdaError if refused)."""
    root = parse_cda(cda_bytes, max_bytes=max_bytes)
    header = extract_header(root)
    out: list[str] = [
        '<!DOCTYPE html>\n<html lang="fr"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        '<meta name="referrer" content="no-referrer">',
        f"<title>{_e(header.title or 'Document CDA')}</title><style>{_PAGE_CSS}</style>",
        "</head><body><main>",
    ]
    _header(header, out)
    _Renderer(root, embed_pdf).body(out)
    out.append("</main></body></html>\n")
    return "".join(out)
