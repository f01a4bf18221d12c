"""The ANS CDA examples: header extraction, XSD and CI-SIS volet schematron (issue 6, item 2).

Each example has an explicit expectation: its volet, its header values, and the list of its own
deviations found by the validator (XSD rule ids, schematron rule ids). An empty list means
"valid"; the test fails when the validator finds more or fewer. ``unchecked`` lists the value
sets (``jeuxDeValeurs/*.xml``) that a failing assertion needed and that the shared data does
not ship, so those assertions could not be decided.

The second half tests the schematron compiler itself on small hand-written schematrons.
"""

from __future__ import annotations

import os
import shutil
import textwrap
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from lxml import etree

from mssante.formats.cda import (
    INS_OIDS,
    extract_header,
    has_ins_with_traits,
    parse_cda,
)
from mssante.formats.cda_validation import (
    VOLET_BY_TEMPLATE_ID,
    CdaValidator,
    SchematronError,
    compile_schematron,
)

SHARED_DATA = Path(
    os.environ.get(
        "MSSANTE_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"
    )
)
CDA_DIR = SHARED_DATA / "cda"
EXAMPLES = CDA_DIR / "examples"
SCHEMATRONS = CDA_DIR / "schematrons"
NS = {"cda": "urn:hl7-org:v3"}

pytestmark = pytest.mark.skipif(
    not EXAMPLES.is_dir(), reason=f"shared CDA data not found at {CDA_DIR}"
)


@dataclass(frozen=True)
class Expected:
    volet: str | None
    code: str
    title: str
    ins: str | None
    xsd: tuple[str, ...] = ()
    schematron: tuple[str, ...] = ()
    unchecked: tuple[str, ...] = ()


PAT3 = "279035121518989"  # the ANS test patient PAT-TROIS Dominique (INS-NIR de test)
EXPECTED: dict[str, Expected] = {
    "BIO-CR-BIO_2024.01_Microbiologie_V2.xml": Expected(
        "BIO-CR-BIO_2024.01",
        "11502-2",
        "Compte rendu d'examens biologiques",
        PAT3,
        unchecked=("JDV_HL7_ObservationInterpretation_CISIS.xml",),
    ),
    "BIO-CR-BIO_2024.01_TSH_1.xml": Expected(
        # no templateId/@extension: the latest BIO-CR-BIO schematron is chosen
        "BIO-CR-BIO_2024.01",
        "11502-2",
        "Compte rendu d'examens biologiques",
        PAT3,
        unchecked=("JDV_HL7_ObservationInterpretation_CISIS.xml",),
    ),
    "BIO-TROD_2024.01_COVID-19.xml": Expected(
        "BIO-TROD_2024.01",
        "96173-0",
        "Test rapide d'orientation diagnostique : TROD Covid-19",
        PAT3,
        unchecked=("JDV_ResultatDepistage_CISIS.xml",),
    ),
    "DLU-EHPAD-FLUDT_2022.01.xml": Expected(
        "DLU-EHPAD-FLUDT_2022.01",
        "74207-2",
        "FICHE DE LIAISON D'URGENCE/DOCUMENT DE TRANSFERT DE L'EHPAD VERS LE SERVICE DES URGENCES",
        PAT3,
        unchecked=("JDV_ProtheseObjetPersonnel_CISIS.xml",),
    ),
    # Level 1 documents (XDS-SD templateId only): no volet schematron applies, XSD only.
    "DOC_NON_STRUCTURE_CDA-R2-N1.xml": Expected(
        None, "11502-2", "Compte rendu d'examens biologiques", PAT3
    ),
    "IMG_CR_IMG_2024.01_CDA-R2-Niveau-1.xml": Expected(
        None,
        "18748-4",
        "CR d’imagerie médicale - Scanner Tête + Cou + Thorax avec injection",
        PAT3,
    ),
    "IPS-FR_2024.01.xml": Expected("IPS-FR_2024.01", "60591-5", "SYNTHESE MEDICALE", PAT3),
    "LDL-SES_2022.01.xml": Expected(
        "LDL-SES_2022.01",
        "11490-0",
        "Lettre de liaison à la sortie de l'établissement de santé",
        PAT3,
        unchecked=("JDV_ModaliteEntree_CISIS.xml",),
    ),
    # templateId 1.2.250.1.213.1.1.1.13 extension 201310 → the VSM 1.4 schematron
    "VSM_1.4_2022.01.xml": Expected("VSM_1.4_2022.01", "SYNTH", "Synthèse Médicale", PAT3),
    "eDISP-MED_2024.01.xml": Expected(
        "eDISP-MED_2024.01", "60593-1", "Dispensation médicamenteuse", "277076322082910"
    ),
    "eP-MED-DM_2024.01_PosoNonStruct.xml": Expected(
        "EP-MED-DM_2024.01",
        "57833-6",
        "Prescription de médicaments et/ou de dispositifs médicaux",
        PAT3,
    ),
}


@pytest.fixture(scope="module")
def validator(tmp_path_factory: pytest.TempPathFactory) -> CdaValidator:
    cache = os.environ.get("MSSANTE_SCHEMATRON_CACHE")
    return CdaValidator(
        CDA_DIR / "schemas",
        SCHEMATRONS,
        cache_dir=Path(cache) if cache else tmp_path_factory.mktemp("schematron-cache"),
    )


def test_every_example_has_an_expectation() -> None:
    assert sorted(p.name for p in EXAMPLES.glob("*.xml")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_header(name: str) -> None:
    expected = EXPECTED[name]
    header = extract_header((EXAMPLES / name).read_bytes())
    assert header.code is not None and header.code.code == expected.code
    assert header.title == expected.title
    assert header.document_id is not None and header.document_id.root
    assert header.effective_time and header.effective_time[:4].isdigit()
    assert "1.2.250.1.213.1.1.1.1" in header.template_roots  # CI-SIS header conformance
    patient = header.patient
    assert patient is not None
    assert patient.ins == expected.ins
    assert patient.ins_oid in INS_OIDS
    assert patient.birth_family and patient.first_given and patient.birth_time and patient.sex
    assert has_ins_with_traits(header)
    assert header.author is not None and header.author.time
    assert header.custodian is not None and header.custodian.name
    assert header.legal_authenticator is not None


def test_header_values_of_the_level1_example() -> None:
    header = extract_header((EXAMPLES / "DOC_NON_STRUCTURE_CDA-R2-N1.xml").read_bytes())
    patient = header.patient
    assert patient is not None
    assert (patient.birth_family, patient.first_given) == ("PAT-TROIS", "DOMINIQUE")
    assert patient.given_names == ("DOMINIQUE MARIE-LOUISE",)
    assert (patient.birth_time, patient.sex, patient.ins_kind) == (
        "19790328",
        "F",
        "INS-NIR de test",
    )
    assert patient.used_family == "PAT-TROIS"
    author = header.author
    assert author is not None
    assert (author.id_nat_ps, author.family, author.time) == (
        "801234534765",
        "CAMPARINI",
        "20210104160527+0100",
    )
    assert author.organisation is not None and author.organisation.name == "Laboratoire des charmes"
    assert header.custodian is not None and header.custodian.id is not None
    assert header.custodian.id.extension == "1120459876"
    assert header.legal_authenticator is not None
    assert header.legal_authenticator.id_nat_ps == "807505123456"
    assert (header.service_start, header.service_end) == (
        "20210104134700+0100",
        "20210104135500+0100",
    )
    assert header.encounter_start == "20200701134745"
    assert (header.set_id is not None, header.version_number, header.language_code) == (
        True,
        1,
        "fr-FR",
    )
    assert header.confidentiality_code is not None and header.confidentiality_code.code == "N"
    assert not header.structured


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_validates_or_lists_its_own_deviations(name: str, validator: CdaValidator) -> None:
    expected = EXPECTED[name]
    data = (EXAMPLES / name).read_bytes()
    assert [i.rule_id for i in validator.validate_xsd(data)] == list(expected.xsd)
    report = validator.check_schematron(data)
    assert report.volet == expected.volet
    assert (report.schematron is not None) == (expected.volet is not None)
    assert [i.rule_id for i in report.issues] == list(expected.schematron)
    assert report.unchecked_value_sets == expected.unchecked


@pytest.mark.parametrize("name", sorted(n for n, e in EXPECTED.items() if e.volet is not None))
def test_schematron_rules_fire_on_each_volet(name: str, validator: CdaValidator) -> None:
    """Guards against a vacuous pass: without its sections every structured example fails."""
    root = parse_cda((EXAMPLES / name).read_bytes())
    body = root.find("cda:component/cda:structuredBody", NS)
    assert body is not None
    for component in body.findall("cda:component", NS):
        body.remove(component)
    issues = validator.validate_schematron(root)
    assert issues and all(i.severity == "error" for i in issues)
    assert all(i.location.startswith("/cda:ClinicalDocument[1]") for i in issues)
    assert all(i.message.startswith("[") for i in issues)  # the CI-SIS "[volet] …" messages


def test_xsd_deviation_is_reported_with_a_location(validator: CdaValidator) -> None:
    root = parse_cda((EXAMPLES / "LDL-SES_2022.01.xml").read_bytes())
    title = root.find("cda:title", NS)
    assert title is not None
    title.set("onclick", "x")
    etree.SubElement(root, "{urn:hl7-org:v3}bogus")
    issues = validator.validate_xsd(root)
    assert {i.rule_id for i in issues} == {
        "xsd:SCHEMAV_CVC_COMPLEX_TYPE_3_2_1",
        "xsd:SCHEMAV_ELEMENT_CONTENT",
    }
    assert "/cda:ClinicalDocument[1]/cda:title[1]" in {i.location for i in issues}


def test_header_deviation_names_the_rule(validator: CdaValidator) -> None:
    root = parse_cda((EXAMPLES / "BIO-TROD_2024.01_COVID-19.xml").read_bytes())
    code = root.find("cda:code", NS)
    assert code is not None
    code.set("code", "ZZZ")
    issues = validator.validate_schematron(root)
    assert [i.rule_id for i in issues] == ["Entete_BIO-TROD#1"]
    assert issues[0].location == "/cda:ClinicalDocument[1]"


def test_value_sets_decide_the_unchecked_assertions(
    tmp_path: Path, validator: CdaValidator
) -> None:
    data = (EXAMPLES / "LDL-SES_2022.01.xml").read_bytes()
    svs = textwrap.dedent("""\
        <RetrieveValueSetResponse xmlns="urn:ihe:iti:svs:2008"><ValueSet><ConceptList>
        <Concept code="{code}" codeSystem="2.16.840.1.113883.6.96" displayName="x"/>
        </ConceptList></ValueSet></RetrieveValueSetResponse>""")
    cache = validator.cache_dir
    (tmp_path / "ok").mkdir()
    (tmp_path / "ok" / "JDV_ModaliteEntree_CISIS.xml").write_text(svs.format(code="107724000"))
    ok = CdaValidator(
        validator.schemas_dir, SCHEMATRONS, value_sets_dir=tmp_path / "ok", cache_dir=cache
    ).check_schematron(data)
    assert (ok.issues, ok.unchecked_value_sets) == ((), ())
    (tmp_path / "ko").mkdir()
    (tmp_path / "ko" / "JDV_ModaliteEntree_CISIS.xml").write_text(svs.format(code="1"))
    ko = CdaValidator(
        validator.schemas_dir, SCHEMATRONS, value_sets_dir=tmp_path / "ko", cache_dir=cache
    ).check_schematron(data)
    assert [i.rule_id for i in ko.issues] == ["JDV_ModaliteEntree_LDL-SES#3"]
    assert "[107724000:transfert d'un(e) patient(e):2.16.840.1.113883.6.96]" in ko.issues[0].message
    assert ko.issues[0].location.endswith("/cda:observation[1]/cda:value[1]")


@pytest.mark.parametrize(
    ("root", "extension", "volet"),
    [
        ("1.2.250.1.213.1.1.1.29", "2022.01", "LDL-SES_2022.01"),
        ("1.2.250.1.213.1.1.1.55", None, "BIO-CR-BIO_2024.01"),
        ("1.2.250.1.213.1.1.1.55", "2021.01", "BIO-CR-BIO_2021.01"),
        ("1.2.250.1.213.1.1.1.39", "2099.01", "EP-MED-DM_2024.01"),
        ("1.2.250.1.213.1.1.1.13", "201310", "VSM_1.4_2022.01"),
        ("1.2.250.1.213.1.1.1.13", "2023.01", "VSM_2023.01"),
        ("1.2.250.1.213.1.1.1.37", None, "VAC_2023.01"),
        ("1.3.6.1.4.1.19376.1.2.20", None, None),
    ],
)
def test_volet_selection(
    root: str, extension: str | None, volet: str | None, validator: CdaValidator
) -> None:
    ext = f' extension="{extension}"' if extension else ""
    doc = (
        f'<ClinicalDocument xmlns="urn:hl7-org:v3"><templateId root="1.2.250.1.213.1.1.1.1"/>'
        f'<templateId root="{root}"{ext}/></ClinicalDocument>'
    ).encode()
    found, path = validator.schematron_for(doc)
    assert found == volet
    if volet is not None:
        assert path is not None and path.name == f"CI-SIS_{volet}.sch"


def test_validation_from_several_threads(validator: CdaValidator) -> None:
    data = (EXAMPLES / "VSM_1.4_2022.01.xml").read_bytes()
    with ThreadPoolExecutor(4) as pool:
        reports = list(pool.map(lambda _: validator.check_schematron(data), range(12)))
    assert {(r.volet, r.issues) for r in reports} == {("VSM_1.4_2022.01", ())}


def test_every_mapped_volet_has_a_schematron() -> None:
    for volet in VOLET_BY_TEMPLATE_ID.values():
        assert list(SCHEMATRONS.glob(f"CI-SIS_{volet}_*.sch")), volet


def test_broken_schematron_is_an_error(validator: CdaValidator) -> None:
    # Its volet folder is absent from the shared data: a configuration error, not "valid".
    with pytest.raises(SchematronError, match=r"BIO-CR-BIO_2023\.01"):
        validator.prepare(SCHEMATRONS / "CI-SIS_BIO-CR-BIO_2023.01.sch")


def test_compiled_xslt_is_cached_on_disk_and_invalidated(tmp_path: Path) -> None:
    sch = SCHEMATRONS / "CI-SIS_LDL-SES_2022.01.sch"
    _, used = compile_schematron(sch)
    copy_root = tmp_path / "schematrons"
    for path in used:
        target = copy_root / path.relative_to(SCHEMATRONS.resolve())
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)
    cache = tmp_path / "cache"
    first = CdaValidator(CDA_DIR / "schemas", copy_root, cache_dir=cache)
    copy_sch = copy_root / sch.name
    assert first._xslt_text(copy_sch)[1] is True
    assert len(list(cache.glob("*.xsl"))) == 1
    assert (
        CdaValidator(CDA_DIR / "schemas", copy_root, cache_dir=cache)._xslt_text(copy_sch)[1]
        is False
    )
    included = next(p for p in copy_root.rglob("Entete_LDL-SES.sch"))
    included.write_text(included.read_text(encoding="utf-8") + "\n", encoding="utf-8")
    assert (
        CdaValidator(CDA_DIR / "schemas", copy_root, cache_dir=cache)._xslt_text(copy_sch)[1]
        is True
    )


# ------------------------------------------------------- the compiler on small schematrons ----

SCH_HEAD = (
    '<schema xmlns="http://purl.oclc.org/dsdl/schematron" queryBinding="xslt2" {extra}>'
    '<ns prefix="cda" uri="urn:hl7-org:v3"/>'
)


def _write(tmp_path: Path, body: str, extra: str = "", files: dict[str, str] | None = None) -> Path:
    for name, text in (files or {}).items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text, encoding="utf-8")
    sch = tmp_path / "CI-SIS_TEST_2024.01.sch"
    sch.write_text(SCH_HEAD.format(extra=extra) + body + "</schema>", encoding="utf-8")
    return sch


DOC = (
    b'<ClinicalDocument xmlns="urn:hl7-org:v3"><title>T</title>'
    b'<code code="A" codeSystem="1.2"/><code code="B"/></ClinicalDocument>'
)


def _run(tmp_path: Path, sch: Path) -> list[tuple[str, str, str, str]]:
    validator = CdaValidator(CDA_DIR / "schemas", tmp_path, cache_dir=tmp_path / "cache")
    report = validator.check_schematron(DOC, schematron=sch)
    return [(i.rule_id, i.severity, i.location, i.message) for i in report.issues]


def test_compiler_assert_report_value_of_and_lets(tmp_path: Path) -> None:
    sch = _write(
        tmp_path,
        """
      <let name="expected" value="'A'"/>
      <pattern id="p1">
        <let name="n" value="count(//cda:code)"/>
        <rule context="cda:code">
          <let name="c" value="@code"/>
          <assert test="$c = $expected"
            >code <value-of select="$c"/> of <value-of select="$n"/></assert>
          <report test="not(@codeSystem)" role="warning">no system</report>
        </rule>
      </pattern>""",
    )
    assert _run(tmp_path, sch) == [
        ("p1#1", "error", "/cda:ClinicalDocument[1]/cda:code[2]", "code B of 2"),
        ("p1#2", "warning", "/cda:ClinicalDocument[1]/cda:code[2]", "no system"),
    ]


def test_compiler_first_matching_rule_wins_and_attribute_contexts(tmp_path: Path) -> None:
    sch = _write(
        tmp_path,
        """
      <pattern id="p">
        <rule context="cda:code[@code='A']"><assert test="false()">first</assert></rule>
        <rule context="cda:code"><assert test="false()">second</assert></rule>
        <rule context="cda:code/@codeSystem"><assert test=". = '9'">attr</assert></rule>
      </pattern>""",
    )
    assert [(r, loc, msg) for r, _, loc, msg in _run(tmp_path, sch)] == [
        ("p#1", "/cda:ClinicalDocument[1]/cda:code[1]", "first"),
        ("p#3", "/cda:ClinicalDocument[1]/cda:code[1]/@codeSystem", "attr"),
        ("p#2", "/cda:ClinicalDocument[1]/cda:code[2]", "second"),
    ]


def test_compiler_includes_abstract_patterns_and_phases(tmp_path: Path) -> None:
    files = {
        "abstract/mandatory.sch": """<pattern xmlns="http://purl.oclc.org/dsdl/schematron"
            abstract="true" id="mandatory"><rule context="$ctx">
            <assert test="$what">[mandatory] <value-of select="$label"/> missing</assert>
            </rule></pattern>""",
        "include/Entrees/inst.sch": """<pattern xmlns="http://purl.oclc.org/dsdl/schematron"
            id="inst" is-a="mandatory"><param name="ctx" value="cda:ClinicalDocument"/>
            <param name="what" value="cda:setId"/>
            <param name="label" value="'setId'"/></pattern>""",
        "include/off.sch": """<pattern xmlns="http://purl.oclc.org/dsdl/schematron" id="off">
            <rule context="cda:title"><assert test="false()">inactive</assert></rule></pattern>""",
    }
    sch = _write(
        tmp_path,
        '<include href="abstract/mandatory.sch"/>'
        # written on a case-insensitive file system upstream: "entrees" is "Entrees"
        '<include href="include/entrees/inst.sch"/><include href="include/off.sch"/>'
        '<phase id="ph"><active pattern="inst"/></phase>',
        extra='defaultPhase="ph"',
        files=files,
    )
    assert _run(tmp_path, sch) == [
        ("inst#1", "error", "/cda:ClinicalDocument[1]", "[mandatory] setId missing")
    ]
    xslt, used = compile_schematron(sch)
    assert len(used) == 4 and "inactive" not in xslt


def test_compiler_refuses_missing_include(tmp_path: Path) -> None:
    sch = _write(tmp_path, '<include href="include/absent.sch"/>')
    with pytest.raises(SchematronError, match=r"absent\.sch"):
        compile_schematron(sch)
