"""Validation of CI-SIS CDA R2 documents: the CDA XSD and the volet's ISO schematron.

XSD: ``CDA_extended.xsd`` from the ``schemas`` directory (the upstream relative layout is kept
so its imports resolve), compiled once per process with lxml/libxml2.

Schematron engine: our own ISO Schematron → XSLT 3.0 compiler (below), run by SaxonC-HE
(``saxonche``). The CI-SIS schematrons declare ``queryBinding="xslt2"``; no ISO→XSLT 2
compiler is packaged on PyPI (lxml only ships the XSLT 1 skeleton), so compilation is done
here in Python. It supports the subset the 1,468 CI-SIS files use: ``include``, abstract
patterns (``is-a`` + ``param``), ``phase``/``active`` (the ``defaultPhase``), ``let`` at schema,
pattern and rule level, ``assert``, ``report`` and ``value-of``; ``role``/``flag``/``diagnostics``
are honoured only as far as ``role`` goes (``warning``/``warn``/``info`` → warning). The
generated XSLT is cached on disk under ``cache_dir`` (``<stem>-<sha256(.sch + compiler
version)>.xsl``, with a ``.files`` manifest of the SHA-256 of every included file, checked on
load); the compiled Saxon executable is kept in memory per process (SaxonC-HE cannot export
it). Saxon calls are serialised by a process-wide lock; the processor is created lazily, so
create it after forking workers. Rule ids are ``<pattern id>#<n>`` (n-th assert/report of the
pattern after abstract-pattern expansion, 1-based).

Value sets: the CI-SIS rules call ``document('../jeuxDeValeurs/JDV_….xml')``. Those SVS files
are looked up by file name in ``value_sets_dir``; when one is missing, a failing assertion
that needs it is not reported as an error but listed in ``SchematronReport.unchecked_value_sets``
(the copy of the schematrons in ``shared/data`` ships no ``jeuxDeValeurs/``).

Choosing the volet: the document-level CI-SIS ``templateId`` (``1.2.250.1.213.1.1.1.x``,
mapping built from ASS_A11 "CorresModeleCDA-XdsFormatCode" and checked by scanning which
templateId each ``CI-SIS_<VOLET>_<version>.sch`` tests) gives the volet; its ``@extension``
gives the version (``CI-SIS_<VOLET>_<extension>.sch``), else the latest version present. The
document code alone never selects a schematron: a level-1 (PDF) report with code 11502-2 must
not be checked against the structured CR-BIO rules.
"""

from __future__ import annotations

import copy
import hashlib
import os
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from lxml import etree

from mssante.formats.cda import CDA_NS, element_path, parse_cda

__all__ = [
    "COMPILER_VERSION",
    "CdaValidator",
    "Issue",
    "SchematronError",
    "SchematronReport",
    "compile_schematron",
]

COMPILER_VERSION = "1"
SCH_NS = "http://purl.oclc.org/dsdl/schematron"
XSL_NS = "http://www.w3.org/1999/XSL/Transform"
RES_NS = "urn:mssante:schematron-result"
_S = f"{{{SCH_NS}}}"
_VAR = re.compile(r"\$([A-Za-z_][\w.\-]*)")
_DOCUMENT_CALL = re.compile(r"\bdocument\s*\(")

#: document-level templateId → volet name (file prefix ``CI-SIS_<volet>_``), as "suffix volet"
#: pairs where the templateId is ``1.2.250.1.213.1.1.1.<suffix>``.
_VOLETS = """
5.1 CSE-CS8  5.2 CSE-CS9  5.3 CSE-CS24  5.4 CSE-MDE  8 CANCER-FRCP  12.1 OBP-SAP  12.2 OBP-SNM
12.3 OBP-SNE  12.4 OBP-SCM  12.5 OBP-SEM  13 VSM  15 AVC-AUNV  16 AVC-EUNV  17 AVC-SUNV
18 OPH-CR-RTN  2.1.1 CARD-F-PRC-AVK  2.1.2 CARD-F-PRC-TAP  2.1.3 CARD-F-PRC-DCI
2.1.4 CARD-F-PRC-PSC  2.1.5 CARD-F-PRC-PPV  21 LDL-EES  22 DLU-EHPAD-DLU  23 DLU-EHPAD-FLUDT
24 DLU-EHPAD-FLUDR  25 AVC-PAVC  26 CANCER-PPS  27 CANCER-D2LM-FIN  28 CANCER-D2LM-FIDD
29 LDL-SES  30 SDM-MR  32 CANCER-CR-GM  36 CNAM-HR  37 VAC  38 TLM-DA  39 EP-MED-DM
40 ANEST-CR-ANEST  41 ANEST-CR-CPA  42 OPH-BRE  45 IMG-CR-IMG  46 VAC-NOTE  47 IMG-DA-IMG
51 IPS-FR  54 eDISP-MED  55 BIO-CR-BIO  59 BIO-TROD
""".split()
VOLET_BY_TEMPLATE_ID: dict[str, str] = {
    f"1.2.250.1.213.1.1.1.{suffix}": volet
    for suffix, volet in zip(_VOLETS[::2], _VOLETS[1::2], strict=True)
}
#: templateId/@extension of VSM 1.4 documents (201310) → the "VSM_1.4" schematron.
_VSM_EXTENSION_ALIASES = {"201310": "1.4_2022.01"}


class SchematronError(RuntimeError):
    """A schematron cannot be compiled or run (missing include, engine error)."""


@dataclass(frozen=True)
class Issue:
    severity: Literal["error", "warning"]
    location: str
    message: str
    rule_id: str


@dataclass(frozen=True)
class SchematronReport:
    volet: str | None
    schematron: Path | None
    issues: tuple[Issue, ...] = ()
    unchecked_value_sets: tuple[str, ...] = ()
    seconds: float = 0.0
    compiled: bool = field(default=False, compare=False)

    @property
    def errors(self) -> tuple[Issue, ...]:
        return tuple(i for i in self.issues if i.severity == "error")


# ---------------------------------------------------------------- schematron → XSLT 3.0 ----

_SAFE_PARSER = etree.XMLParser(
    resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False, remove_comments=True
)


def _resolve_case_insensitive(path: Path) -> Path:
    """The CI-SIS files were written on a case-insensitive file system: ``include/.../entrees``
    points at ``Entrees``. Fall back to a case-insensitive match, one component at a time."""
    if path.exists():
        return path
    current = Path(path.anchor)
    for part in path.parts[1:]:
        candidate = current / part
        if not candidate.exists() and current.is_dir():
            matches = [c for c in current.iterdir() if c.name.lower() == part.lower()]
            candidate = matches[0] if len(matches) == 1 else candidate
        current = candidate
    return current


def _load_with_includes(path: Path, used: list[Path], depth: int = 0) -> etree._Element:
    if depth > 20:
        raise SchematronError(f"include nesting too deep at {path}")
    path = _resolve_case_insensitive(path)
    if not path.is_file():
        raise SchematronError(f"schematron file missing: {path}")
    used.append(path)
    root = etree.parse(str(path), _SAFE_PARSER).getroot()
    for inc in list(root.iter(_S + "include")):
        target = (path.parent / (inc.get("href") or "")).resolve()
        included = _load_with_includes(target, used, depth + 1)
        parent = inc.getparent()
        assert parent is not None
        if included.tag == _S + "schema":
            index = parent.index(inc)
            for offset, child in enumerate(c for c in included if c.tag != _S + "title"):
                parent.insert(index + offset, child)
            parent.remove(inc)
        else:
            parent.replace(inc, included)
    return root


def _substitute(expr: str, mapping: dict[str, str]) -> str:
    return _VAR.sub(lambda m: mapping.get(m.group(1), m.group(0)), expr)


def _instantiate(abstract: etree._Element, instance: etree._Element) -> etree._Element:
    params = {p.get("name", ""): p.get("value", "") for p in instance.iter(_S + "param")}
    # ISO Schematron: textual replacement of $name, the longest names first.
    mapping = {name: value for name, value in params.items() if name}
    pattern = copy.deepcopy(abstract)
    pattern.set("id", instance.get("id") or abstract.get("id") or "")
    pattern.attrib.pop("abstract", None)
    for el in pattern.iter():
        for attr in ("context", "test", "select", "value", "path"):
            value = el.get(attr)
            if value is not None:
                el.set(attr, _substitute(value, mapping))
    return pattern


def _xsl(parent: etree._Element, tag: str, **attrs: str) -> etree._Element:
    return etree.SubElement(
        parent, f"{{{XSL_NS}}}{tag}", {k.replace("_", "-"): v for k, v in attrs.items()}
    )


def _document_args(test: str) -> list[str]:
    """The argument expressions of every ``document(...)`` call of an XPath expression."""
    args = []
    for match in _DOCUMENT_CALL.finditer(test):
        depth, start = 1, match.end()
        for i in range(start, len(test)):
            depth += {"(": 1, ")": -1}.get(test[i], 0)
            if depth == 0:
                args.append(test[start:i])
                break
    return args


_FUNCTIONS = f"""<xsl:stylesheet version="3.0" xmlns:xsl="{XSL_NS}"
 xmlns:xs="http://www.w3.org/2001/XMLSchema" xmlns:r="{RES_NS}">
 <xsl:param name="mssante-value-sets" as="xs:string" select="''"/>
 <xsl:function name="r:vs-uri" as="xs:string">
  <xsl:param name="p"/>
  <xsl:sequence select="concat($mssante-value-sets, tokenize(string($p), '/')[last()])"/>
 </xsl:function>
 <xsl:function name="r:vs" as="document-node()?">
  <xsl:param name="p"/>
  <xsl:sequence select="if ($mssante-value-sets ne '' and doc-available(r:vs-uri($p)))
   then doc(r:vs-uri($p)) else ()"/>
 </xsl:function>
 <xsl:function name="r:vs-missing" as="xs:boolean">
  <xsl:param name="p"/>
  <xsl:sequence select="$mssante-value-sets eq '' or not(doc-available(r:vs-uri($p)))"/>
 </xsl:function>
 <xsl:function name="r:qn" as="xs:string">
  <xsl:param name="e" as="node()"/>
  <xsl:sequence select="if (namespace-uri($e) eq '{CDA_NS}')
   then concat('cda:', local-name($e)) else name($e)"/>
 </xsl:function>
 <xsl:function name="r:loc" as="xs:string">
  <xsl:param name="n" as="node()"/>
  <xsl:sequence select="concat(string-join(for $e in $n/ancestor-or-self::* return
   concat('/', r:qn($e), '[', count($e/preceding-sibling::*[node-name(.) eq node-name($e)]) + 1,
   ']'), ''), if ($n instance of attribute()) then concat('/@', name($n)) else '')"/>
 </xsl:function>
 <xsl:template match="/"><r:report/></xsl:template>
</xsl:stylesheet>"""


def compile_schematron(sch_path: Path) -> tuple[str, list[Path]]:
    """Compile an ISO schematron (with its includes) into an XSLT 3.0 stylesheet text.

    Returns the stylesheet and the files read (to key a cache). Output of the stylesheet:
    ``<r:report>`` with ``<r:failed pattern rule kind role loc>message</r:failed>`` and
    ``<r:unchecked vs="…"/>`` elements.
    """
    used: list[Path] = []
    schema = _load_with_includes(sch_path.resolve(), used)
    namespaces = {ns.get("prefix", ""): ns.get("uri", "") for ns in schema.iter(_S + "ns")}
    patterns = [p for p in schema.iter(_S + "pattern")]
    abstracts = {p.get("id"): p for p in patterns if p.get("abstract") == "true"}
    concrete: dict[str, etree._Element] = {}
    for pattern in patterns:
        if pattern.get("abstract") == "true":
            continue
        if pattern.get("is-a"):
            base = abstracts.get(pattern.get("is-a"))
            if base is None:
                raise SchematronError(f"unknown abstract pattern {pattern.get('is-a')!r}")
            pattern = _instantiate(base, pattern)
        concrete.setdefault(pattern.get("id") or f"pattern-{len(concrete) + 1}", pattern)
    phase_id = schema.get("defaultPhase")
    phase = next((p for p in schema.iter(_S + "phase") if p.get("id") == phase_id), None)
    if phase is not None:
        active = [a.get("pattern", "") for a in phase.iter(_S + "active")]
        selected = [(pid, concrete[pid]) for pid in dict.fromkeys(active) if pid in concrete]
    else:
        selected = list(concrete.items())

    nsmap = {"xsl": XSL_NS, "xs": "http://www.w3.org/2001/XMLSchema", "r": RES_NS}
    nsmap.update({k: v for k, v in namespaces.items() if k and k not in nsmap})
    sheet = etree.fromstring(_FUNCTIONS.encode())
    out = etree.Element(sheet.tag, sheet.attrib, nsmap=nsmap)
    out.set("exclude-result-prefixes", " ".join(k for k in nsmap if k not in ("xsl", "r")))
    out.extend(list(sheet))
    root_template = out[-1]
    report = root_template[0]

    globals_seen: dict[str, str] = {}

    def add_global(let: etree._Element, renames: dict[str, str]) -> None:
        name, value = let.get("name", ""), _rewrite(let.get("value", ""), renames)
        if name in globals_seen:
            if globals_seen[name] == value:
                return
            renames[name] = f"{name}__{len(globals_seen)}"
            name = renames[name]
        globals_seen[name] = value
        var = etree.Element(f"{{{XSL_NS}}}variable", name=name, select=value)
        out.insert(len(out) - 1, var)

    for let in schema.findall(_S + "let") + (
        phase.findall(_S + "let") if phase is not None else []
    ):
        add_global(let, {})
    for mode_index, (pattern_id, pattern) in enumerate(selected, start=1):
        mode = f"M{mode_index}"
        renames: dict[str, str] = {}
        for let in pattern.findall(_S + "let"):
            add_global(let, renames)
        _xsl(report, "apply-templates", select="/", mode=mode)
        counter = 0
        rules = pattern.findall(_S + "rule")
        for rule_index, rule in enumerate(rules):
            template = _xsl(
                out,
                "template",
                match=_rewrite(rule.get("context", ""), renames),
                mode=mode,
                priority=str(1000 - rule_index),
            )
            for child in rule:
                if child.tag == _S + "let":
                    _xsl(
                        template,
                        "variable",
                        name=child.get("name", ""),
                        select=_rewrite(child.get("value", ""), renames),
                    )
                elif child.tag in (_S + "assert", _S + "report"):
                    counter += 1
                    _emit_check(template, child, f"{pattern_id}#{counter}", renames)
            _xsl(template, "apply-templates", select="@*|*", mode=mode)
        _xsl(
            _xsl(out, "template", match="/", mode=mode, priority="-2"),
            "apply-templates",
            select="*",
            mode=mode,
        )
        _xsl(
            _xsl(out, "template", match="*", mode=mode, priority="-2"),
            "apply-templates",
            select="@*|*",
            mode=mode,
        )
        _xsl(out, "template", match="@*", mode=mode, priority="-2")
    out.append(root_template)
    return etree.tostring(out, encoding="unicode"), used


def _rewrite(expr: str, renames: dict[str, str]) -> str:
    expr = _substitute(expr, {k: f"${v}" for k, v in renames.items()}) if renames else expr
    return _DOCUMENT_CALL.sub("r:vs(", expr)


def _emit_check(
    template: etree._Element, check: etree._Element, rule_id: str, renames: dict[str, str]
) -> None:
    raw_test = _substitute(check.get("test", "true()"), {k: f"${v}" for k, v in renames.items()})
    test = _rewrite(raw_test, {})
    is_assert = check.tag == _S + "assert"
    cond = _xsl(template, "if", test=f"not({test})" if is_assert else test)
    value_sets = [_rewrite(a, {}) for a in _document_args(raw_test)]
    target = cond
    if value_sets:
        choose = _xsl(cond, "choose")
        when = _xsl(choose, "when", test=" or ".join(f"r:vs-missing({a})" for a in value_sets))
        unchecked = etree.SubElement(when, f"{{{RES_NS}}}unchecked")
        joined = ", ".join(f"string({a})" for a in value_sets)
        _xsl(unchecked, "attribute", name="vs", select=f"string-join(({joined}), ' ')")
        target = _xsl(choose, "otherwise")
    failed = etree.SubElement(
        target,
        f"{{{RES_NS}}}failed",
        rule=rule_id,
        role=check.get("role", ""),
        kind="assert" if is_assert else "report",
    )
    _xsl(_xsl(failed, "attribute", name="loc"), "value-of", select="r:loc(.)")
    if check.text:
        _xsl(failed, "text").text = check.text
    for child in check:
        if child.tag == _S + "value-of":
            _xsl(failed, "value-of", select=_rewrite(child.get("select", "''"), renames))
        elif child.tag == _S + "name":
            _xsl(failed, "value-of", select=f"name({child.get('path', '.')})")
        elif isinstance(child.tag, str):
            _xsl(failed, "text").text = "".join(child.itertext())
        if child.tail:
            _xsl(failed, "text").text = child.tail


# ------------------------------------------------------------------------- Saxon runner ----


class _Saxon:
    """One SaxonC processor per process (SaxonC wants a single one); calls are serialised."""

    lock = threading.RLock()
    processor: Any = None
    executables: dict[tuple[str, str], Any] = {}  # noqa: RUF012 - process-wide cache

    @classmethod
    def get(cls) -> Any:
        with cls.lock:
            if cls.processor is None:
                from saxonche import PySaxonProcessor

                cls.processor = PySaxonProcessor(license=False)
            return cls.processor


def _default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mssante" / "schematron"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


CdaInput = bytes | etree._Element | etree._ElementTree
#: compiled XSDs, one per file and process (lxml validators are used under the lock).
_XSD_CACHE: dict[Path, etree.XMLSchema] = {}
_XSD_LOCK = threading.Lock()


class CdaValidator:
    """XSD + CI-SIS schematron validation. Directories come from the caller (the CLI's
    ``--schemas``/``--schematrons``); nothing is copied into the package."""

    def __init__(
        self,
        schemas_dir: Path,
        schematrons_dir: Path | None = None,
        *,
        value_sets_dir: Path | None = None,
        cache_dir: Path | None = None,
        max_bytes: int | None = None,
    ) -> None:
        self.schemas_dir = Path(schemas_dir)
        self.schematrons_dir = Path(schematrons_dir) if schematrons_dir else None
        self.value_sets_dir = value_sets_dir
        if value_sets_dir is None and self.schematrons_dir is not None:
            for candidate in (
                self.schematrons_dir / "jeuxDeValeurs",
                self.schematrons_dir.parent / "jeuxDeValeurs",
            ):
                if candidate.is_dir():
                    self.value_sets_dir = candidate
                    break
        self.cache_dir = cache_dir or _default_cache_dir()
        self.max_bytes = max_bytes

    # -- documents --
    def _root(self, doc: CdaInput) -> etree._Element:
        if isinstance(doc, bytes | bytearray):
            if self.max_bytes is not None:
                return parse_cda(bytes(doc), max_bytes=self.max_bytes)
            return parse_cda(bytes(doc))
        if isinstance(doc, etree._ElementTree):
            return doc.getroot()
        return doc

    # -- XSD --
    @property
    def xsd_path(self) -> Path:
        nested = self.schemas_dir / "infrastructure" / "cda" / "CDA_extended.xsd"
        return nested if nested.is_file() else self.schemas_dir / "CDA_extended.xsd"

    def validate_xsd(self, doc: CdaInput) -> list[Issue]:
        root = self._root(doc)
        with _XSD_LOCK:
            schema = _XSD_CACHE.get(self.xsd_path.resolve())
            if schema is None:
                parser = etree.XMLParser(no_network=True, resolve_entities=False, load_dtd=False)
                schema = etree.XMLSchema(etree.parse(str(self.xsd_path), parser))
                _XSD_CACHE[self.xsd_path.resolve()] = schema
            schema.validate(root.getroottree())
            errors = list(schema.error_log)
        issues = []
        for err in errors:
            location = f"line {err.line}"
            try:
                found = root.getroottree().xpath(err.path) if err.path else []
                if isinstance(found, list) and found and isinstance(found[0], etree._Element):
                    location = element_path(found[0])
            except etree.XPathError:
                pass
            severity: Literal["error", "warning"] = (
                "warning" if err.level_name == "WARNING" else "error"
            )
            issues.append(Issue(severity, location, err.message, f"xsd:{err.type_name}"))
        return issues

    # -- schematron selection --
    def schematron_for(self, doc: CdaInput) -> tuple[str | None, Path | None]:
        """The volet (``LDL-SES_2022.01``) and its ``.sch`` file, or ``(None, None)``."""
        if self.schematrons_dir is None:
            return None, None
        root = self._root(doc)
        for tid in root.findall(f"{{{CDA_NS}}}templateId"):
            volet = VOLET_BY_TEMPLATE_ID.get(tid.get("root", ""))
            if volet is None:
                continue
            files = {
                p.name[len(f"CI-SIS_{volet}_") : -4]: p
                for p in self.schematrons_dir.glob(f"CI-SIS_{volet}_*.sch")
            }
            if not files:
                return volet, None
            ext = tid.get("extension") or ""
            version = _VSM_EXTENSION_ALIASES.get(ext, ext) if volet == "VSM" else ext
            if version not in files:
                version = max(files, key=_version_key)
            return f"{volet}_{version}", files[version]
        return None, None

    # -- schematron compilation and run --
    def _xslt_text(self, sch: Path) -> tuple[str, bool]:
        key = hashlib.sha256(sch.read_bytes() + COMPILER_VERSION.encode()).hexdigest()
        cached = self.cache_dir / f"{sch.stem}-{key[:16]}.xsl"
        manifest = cached.with_suffix(".files")
        if cached.is_file() and manifest.is_file():
            ok = True
            for line in manifest.read_text(encoding="utf-8").splitlines():
                digest, _, name = line.partition(" ")
                path = Path(name)
                if not path.is_file() or _sha256(path) != digest:
                    ok = False
                    break
            if ok:
                return cached.read_text(encoding="utf-8"), False
        text, used = compile_schematron(sch)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(cached)
        manifest.write_text(
            "".join(f"{_sha256(p)} {p}\n" for p in dict.fromkeys(used)), encoding="utf-8"
        )
        return text, True

    def _executable(self, sch: Path) -> tuple[Any, bool]:
        sch = sch.resolve()
        text, compiled = self._xslt_text(sch)
        key = (str(sch), hashlib.sha256(text.encode()).hexdigest())
        with _Saxon.lock:
            exe = _Saxon.executables.get(key)
            if exe is None:
                from saxonche import PySaxonApiError

                compiler = _Saxon.get().new_xslt30_processor()
                try:
                    exe = compiler.compile_stylesheet(stylesheet_text=text)
                except PySaxonApiError as exc:
                    raise SchematronError(f"{sch.name}: {exc}") from exc
                if exe is None:
                    raise SchematronError(f"{sch.name}: Saxon could not compile the stylesheet")
                _Saxon.executables[key] = exe
                compiled = True
        return exe, compiled

    def prepare(self, sch: Path) -> float:
        """Compile (or load from cache) a schematron; return the seconds it took."""
        start = time.perf_counter()
        self._executable(sch)
        return time.perf_counter() - start

    def check_schematron(self, doc: CdaInput, schematron: Path | None = None) -> SchematronReport:
        root = self._root(doc)
        volet, sch = (
            (schematron.stem.removeprefix("CI-SIS_"), schematron)
            if schematron
            else self.schematron_for(root)
        )
        if sch is None:
            return SchematronReport(volet, None)
        exe, compiled = self._executable(sch)
        vs_base = self.value_sets_dir.resolve().as_uri() + "/" if self.value_sets_dir else ""
        source = etree.tostring(root, encoding="unicode")
        start = time.perf_counter()
        with _Saxon.lock:
            from saxonche import PySaxonApiError

            proc = _Saxon.get()
            try:
                node = proc.parse_xml(xml_text=source)
                exe.set_parameter("mssante-value-sets", proc.make_string_value(vs_base))
                output = exe.transform_to_string(xdm_node=node)
            except PySaxonApiError as exc:
                raise SchematronError(f"{sch.name}: {exc}") from exc
        elapsed = time.perf_counter() - start
        issues, unchecked = _read_results(output or "")
        return SchematronReport(volet, sch, tuple(issues), tuple(unchecked), elapsed, compiled)

    def validate_schematron(self, doc: CdaInput) -> list[Issue]:
        return list(self.check_schematron(doc).issues)

    def validate(self, doc: CdaInput) -> list[Issue]:
        root = self._root(doc)
        return self.validate_xsd(root) + self.validate_schematron(root)


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", version.rsplit("_", 1)[-1]))


def _read_results(output: str) -> tuple[list[Issue], list[str]]:
    if not output.strip():
        return [], []
    tree = etree.fromstring(output.encode("utf-8"), _SAFE_PARSER)
    issues: list[Issue] = []
    unchecked: dict[str, None] = {}
    for el in (child for child in tree if isinstance(child.tag, str)):
        if el.tag == f"{{{RES_NS}}}unchecked":
            for vs in (el.get("vs") or "").split():
                unchecked[vs.rsplit("/", 1)[-1]] = None
            continue
        role = (el.get("role") or "").lower()
        severity: Literal["error", "warning"] = (
            "warning" if role in ("warning", "warn", "info", "information") else "error"
        )
        message = " ".join("".join(el.itertext()).split())
        issues.append(Issue(severity, el.get("loc", ""), message, el.get("rule", "")))
    return issues, sorted(unchecked)
