"""Safe HTML rendering of CDA documents (issue 6, item 8): XSS attempts, limits, examples."""

from __future__ import annotations

import base64
import os
from html.parser import HTMLParser
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mssante.formats.cda import CdaError, extract_header, parse_cda
from mssante.formats.cda_render import CSP, MAX_DEPTH, render_html

SHARED_DATA = Path(
    os.environ.get(
        "MSSANTE_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"
    )
)
EXAMPLES = SHARED_DATA / "cda" / "examples"
NS = {"cda": "urn:hl7-org:v3"}

ALLOWED = {
    "html": {"lang"},
    "head": set(),
    "meta": {"charset", "http-equiv", "content", "name"},
    "title": set(),
    "style": set(),
    "body": set(),
    "main": set(),
    "h1": set(),
    "h2": set(),
    "h3": set(),
    "h4": set(),
    "h5": set(),
    "h6": set(),
    "dl": {"class"},
    "dt": set(),
    "dd": set(),
    "section": {"class"},
    "div": {"class"},
    "p": {"class"},
    "span": {"class"},
    "br": set(),
    "sub": set(),
    "sup": {"class"},
    "ul": set(),
    "ol": set(),
    "li": {"class"},
    "table": set(),
    "caption": set(),
    "thead": set(),
    "tbody": set(),
    "tfoot": set(),
    "tr": set(),
    "th": {"colspan", "rowspan", "class"},
    "td": {"colspan", "rowspan", "class"},
    "colgroup": set(),
    "col": {"span"},
    "pre": set(),
    "img": {"class", "alt", "src"},
    "a": {"href", "rel", "target", "download"},
}


class _Checker(HTMLParser):
    """Collects every tag and attribute the browser would see."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.style_blocks = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self.style_blocks += tag == "style"

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)


def assert_safe(page: str) -> _Checker:
    checker = _Checker()
    checker.feed(page)
    checker.close()
    assert page.startswith("<!DOCTYPE html>")
    assert "<script" not in page.lower()
    assert checker.style_blocks == 1  # ours only
    for tag, attrs in checker.tags:
        assert tag in ALLOWED, tag
        assert set(attrs) <= ALLOWED[tag], (tag, attrs)
        if tag == "a":
            href = attrs["href"] or ""
            assert href.startswith(("http://", "https://", "data:application/pdf;base64,")), href
            if not href.startswith("data:"):
                assert attrs["rel"] == "noopener noreferrer"
        if tag == "img":
            assert (attrs["src"] or "").startswith(
                ("data:image/png;base64,", "data:image/jpeg;base64,", "data:image/gif;base64,")
            )
        if tag == "meta" and attrs.get("http-equiv") == "Content-Security-Policy":
            assert attrs["content"] == CSP
    assert CSP == "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
    assert f'<meta http-equiv="Content-Security-Policy" content="{CSP}">' in page
    return checker


def cda(
    narrative: str, *, title: str = "Titre", extra: str = "", section_title: str = "Section"
) -> bytes:
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<ClinicalDocument xmlns="urn:hl7-org:v3" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
 <templateId root="1.2.250.1.213.1.1.1.1"/><id root="1.2.3"/>
 <code code="11490-0" codeSystem="2.16.840.1.113883.6.1" displayName="Lettre"/>
 <title>{title}</title><effectiveTime value="20240102030405+0100"/>
 <recordTarget><patientRole><id root="1.2.250.1.213.1.4.10" extension="279035121518989"/>
  <patient><name><family qualifier="BR">DUPONT</family><given>Marie</given></name>
  <administrativeGenderCode code="F"/><birthTime value="19790328"/></patient></patientRole>
 </recordTarget>
 <component><structuredBody><component><section>
  <title>{section_title}</title><text>{narrative}</text>{extra}
 </section></component></structuredBody></component>
</ClinicalDocument>""".encode()


def test_header_labels() -> None:
    page = render_html(cda("x"))
    assert_safe(page)
    for text in (
        "Patient",
        "DUPONT Marie",
        "Né(e) le",
        "28/03/1979",
        "Féminin",
        "279035121518989 (INS-NIR de test)",
        "Lettre (11490-0)",
        "02/01/2024 03:04",
    ):
        assert text in page


@pytest.mark.parametrize(
    ("narrative", "forbidden", "expected"),
    [
        (
            "&lt;script&gt;alert(1)&lt;/script&gt;",
            "<script",
            "&lt;script&gt;alert(1)&lt;/script&gt;",
        ),
        ('<script xmlns="http://www.w3.org/1999/xhtml">alert(1)</script>ok', "alert(1)", "ok"),
        ("<script>alert(2)</script>ok", "alert(2)", "ok"),
        ("<style>body{display:none}</style>ok", "display:none", "ok"),
        (
            "<paragraph><![CDATA[<script>alert(3)</script>]]></paragraph>",
            "<script",
            "<p>&lt;script&gt;alert(3)&lt;/script&gt;</p>",
        ),
        (
            "<paragraph><![CDATA[</p><img src=x onerror=alert(4)>]]></paragraph>",
            "<img",
            "&lt;img src=x onerror=alert(4)&gt;",
        ),
        (
            '<linkHtml href="javascript:alert(5)">clic</linkHtml>',
            'href="javascript',
            "lien non affiché : javascript:alert(5)",
        ),
        ('<linkHtml href=" JaVaScRiPt:alert(6)">clic</linkHtml>', "<a ", "clic"),
        ('<linkHtml href="data:text/html,&lt;script&gt;">clic</linkHtml>', "<a ", "clic"),
        (
            '<linkHtml href="https://x.org/&quot; onmouseover=&quot;alert(7)">c</linkHtml>',
            "<a ",
            "c",
        ),
        (
            '<content onclick="alert(8)" style="color:red" styleCode="Bold Italics xyz">b'
            "</content>",
            "onclick",
            '<span class="cda-bold cda-italic">b</span>',
        ),
        (
            '<table border="9" onload="x"><tr><td colspan="2" rowspan="abc" style="x">c</td>'
            "</tr></table>",
            "onload",
            '<table><tr><td colspan="2">c</td></tr></table>',
        ),
        ('<content ID="&quot;&gt;&lt;script&gt;">t</content>', "<script", "<span>t</span>"),
        ('<iframe xmlns="http://www.w3.org/1999/xhtml" src="https://evil"/>ok', "<iframe", "ok"),
        ("<footnote>&lt;b&gt;</footnote>", "<b>", '<sup class="cda-note">[&lt;b&gt;]</sup>'),
    ],
)
def test_xss_attempts_in_narrative(narrative: str, forbidden: str, expected: str) -> None:
    page = render_html(cda(narrative))
    assert_safe(page)
    body = page.split("<main>", 1)[1]
    assert forbidden not in body
    assert expected in body


def test_safe_link_is_kept_and_displayed() -> None:
    page = render_html(cda('<linkHtml href="https://esante.gouv.fr/a?b=1&amp;c=2">ANS</linkHtml>'))
    assert_safe(page)
    assert (
        '<a href="https://esante.gouv.fr/a?b=1&amp;c=2" rel="noopener noreferrer" '
        'target="_blank">ANS</a> <span class="cda-url">(https://esante.gouv.fr/a?b=1&amp;c=2)'
        "</span>"
    ) in page


def test_title_and_header_values_are_escaped() -> None:
    page = render_html(
        cda(
            "x",
            title="&lt;/title&gt;&lt;script&gt;x()&lt;/script&gt;",
            section_title="&lt;img src=x onerror=y&gt;",
        )
    )
    assert_safe(page)
    assert "<title>&lt;/title&gt;&lt;script&gt;x()&lt;/script&gt;</title>" in page
    assert "<h2>&lt;img src=x onerror=y&gt;</h2>" in page


def test_lists_tables_and_structure() -> None:
    narrative = (
        '<list listType="ordered"><caption>Cap</caption><item>un</item><item>deux</item></list>'
        "<list><item>a</item></list><paragraph>p<br/>q<sub>1</sub><sup>2</sup></paragraph>"
        "<table><caption>T</caption><thead><tr><th>h</th></tr></thead>"
        "<tbody><tr><td>d</td></tr></tbody></table>"
    )
    sub = "<component><section><title>Sous-section</title><text>s</text></section></component>"
    page = render_html(cda(narrative, extra=sub))
    assert_safe(page)
    for fragment in (
        '<p class="cda-caption">Cap</p><ol><li>un</li><li>deux</li></ol>',
        "<ul><li>a</li></ul>",
        "<p>p<br>q<sub>1</sub><sup>2</sup></p>",
        "<table><caption>T</caption><thead><tr><th>h</th></tr></thead>",
        "<h3>Sous-section</h3>",
    ):
        assert fragment in page


PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 16).decode()


@pytest.mark.parametrize(
    ("media_type", "shown"),
    [("image/png", True), ("image/svg+xml", False), ("text/html", False)],
)
def test_render_multimedia(media_type: str, shown: bool) -> None:
    extra = (
        f'<entry><observationMedia classCode="OBS" moodCode="EVN" ID="img1">'
        f'<value mediaType="{media_type}" representation="B64">{PNG}</value>'
        f"</observationMedia></entry>"
    )
    page = render_html(cda('<renderMultiMedia referencedObject="img1"/>', extra=extra))
    assert_safe(page)
    assert (f'src="data:{media_type};base64,' in page) is shown
    if not shown:
        assert "média non affiché" in page


def test_deep_narrative_is_flattened_and_deeper_documents_refused() -> None:
    depth = 200  # within libxml2's 256 limit, beyond our MAX_DEPTH
    narrative = "<content>" * depth + "&lt;deep&gt;" + "</content>" * depth
    page = render_html(cda(narrative))
    assert_safe(page)
    assert page.count("<span>") == MAX_DEPTH and "&lt;deep&gt;" in page
    with pytest.raises(CdaError):
        render_html(cda("<content>" * 300 + "</content>" * 300))


def test_huge_document_is_refused() -> None:
    data = cda("x" * 2_000_000)
    assert "x" * 1000 in render_html(data)
    with pytest.raises(CdaError, match="too large"):
        render_html(data, max_bytes=1_000_000)


def test_doctype_is_refused() -> None:
    data = cda("&xxe;").replace(
        b"<ClinicalDocument",
        b'<!DOCTYPE ClinicalDocument [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><ClinicalDocument',
        1,
    )
    with pytest.raises(CdaError, match="DOCTYPE"):
        render_html(data)


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=200), st.text(max_size=60))
def test_any_text_is_escaped(text: str, attr: str) -> None:
    from xml.sax.saxutils import escape, quoteattr

    clean = "".join(ch for ch in text + attr if ch.isprintable() and ch not in "\ufffe\uffff")
    narrative = (
        f"<paragraph>{escape(clean)}</paragraph>"
        f"<linkHtml href={quoteattr(clean)}>{escape(clean)}</linkHtml>"
        f"<content styleCode={quoteattr(clean)}>{escape(clean)}</content>"
    )
    try:
        page = render_html(cda(narrative, title=escape(clean)))
    except CdaError:
        return  # characters XML 1.0 does not allow
    assert_safe(page)


# ------------------------------------------------------------------------- the examples ----

needs_examples = pytest.mark.skipif(not EXAMPLES.is_dir(), reason="no shared CDA examples")


@needs_examples
@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.xml")), ids=lambda p: p.name)
def test_examples_render_with_patient_and_section_titles(path: Path) -> None:
    data = path.read_bytes()
    page = render_html(data)
    assert_safe(page)
    header = extract_header(data)
    assert header.patient is not None
    assert f"{header.patient.birth_family} {header.patient.first_given}" in page
    assert "Né(e) le" in page and "Auteur" in page and "Établissement" in page
    root = parse_cda(data)
    titles = [
        " ".join("".join(t.itertext()).split())
        for t in root.iterfind(".//cda:section/cda:title", NS)
    ]
    from html import escape

    for title in titles:
        if title:
            assert escape(title) in page, title


@needs_examples
def test_level1_example_offers_the_pdf() -> None:
    data = (EXAMPLES / "DOC_NON_STRUCTURE_CDA-R2-N1.xml").read_bytes()
    page = render_html(data)
    assert 'download="document.pdf" href="data:application/pdf;base64,JVBERi0' in page
    assert "Télécharger le document PDF" in page
    quiet = render_html(data, embed_pdf=False)
    assert "data:application/pdf" not in quiet and "Document PDF joint" in quiet
    assert_safe(quiet)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('<text mediaType="text/plain">&lt;b&gt;brut</text>', "<pre>&lt;b&gt;brut</pre>"),
        (
            f'<text mediaType="text/plain" representation="B64">'
            f"{base64.b64encode(b'<i>x</i>').decode()}</text>",
            "<pre>&lt;i&gt;x&lt;/i&gt;</pre>",
        ),
        ('<text mediaType="text/html" representation="B64">PGI+</text>', "Contenu non affiché"),
        ('<text mediaType="application/pdf" representation="B64">!!!</text>', "Contenu non"),
    ],
)
def test_non_xml_bodies(body: str, expected: str) -> None:
    structured = cda("x")
    start, end = structured.index(b"<component>"), structured.rindex(b"</component>") + 12
    data = structured[:start] + f"<component><nonXMLBody>{body}</nonXMLBody></component>".encode()
    data += structured[end:]
    page = render_html(data)
    assert_safe(page)
    assert expected in page
