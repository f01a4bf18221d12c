"""The national directory (Annuaire Santé) as the operator sees it: pure data, no I/O.

A directory *entry* is one published BAL (one row of the public extraction
``Extraction_Correspondance_MSSante``, SPEC §4.3, or one ContactPoint of the FHIR API,
SPEC §4.1). A directory *professional* is one exercise situation of a person of the RASS
(``PS_LibreAcces_Personne_activite`` or the Pro Santé Connect extraction): it says who is
listed, which matters for eligibility (R60) and for search by profession and place.

These dataclasses are the contract between the importer (formats/directory_files.py),
the store and search (services/directory.py), the FHIR adapter (http/fhir/) and the
publication of our own BALs (services/directory_publication.py).
"""

from __future__ import annotations

from dataclasses import dataclass

# TRE_R257-TypeBAL (SPEC §3)
BAL_TYPES = ("PER", "ORG", "APP", "CAB")

# SPEC §4.3: `Type Identifiant PP` values
ID_TYPE_ADELI = "0"
ID_TYPE_RPPS = "8"


@dataclass(frozen=True, slots=True)
class DirectoryEntry:
    """One BAL of the directory (the 31 columns of SPEC §4.3, plus FHIR-only metadata).

    Text fields are "" when absent, never None. ``address`` is lower-cased (the
    discriminant of a BAL, SPEC §3).
    """

    bal_type: str  # PER ORG APP CAB
    address: str
    id_type_pp: str = ""  # "8" RPPS, "0" ADELI, "" for structures' BALs
    id_pp: str = ""  # RPPS (11 digits) or ADELI (9)
    id_nat_ps: str = ""  # idNat_PS: "8" + RPPS, "0" + ADELI
    id_type_struct: str = ""  # e.g. "1" FINESS EG, "3" SIRET, "4" RPPS rang…
    id_struct: str = ""  # "Identification Structure" (idNat_Struct)
    service: str = ""  # Service de rattachement
    civility: str = ""  # Civilité d'exercice (DR, MME, M…)
    family_name: str = ""  # Nom d'exercice
    given_name: str = ""  # Prénom d'exercice
    profession_category_code: str = ""
    profession_category_label: str = ""
    profession_code: str = ""  # TRE_G15 (10 = médecin…)
    profession_label: str = ""
    skill_code: str = ""  # savoir-faire (TRE_R38 spécialité…)
    skill_label: str = ""
    digitization: str = ""  # "Dématérialisation" (legacy; kept as given)
    org_name: str = ""  # Raison sociale structure BAL
    org_trade_name: str = ""  # Enseigne commerciale
    address_l2: str = ""  # complément localisation
    address_l3: str = ""  # complément distribution
    street_number: str = ""  # L4 numéro voie
    street_number_suffix: str = ""  # L4 complément numéro (bis, ter)
    street_type: str = ""  # NL4 type voie (R, AV, BD…)
    street_name: str = ""  # L4 libellé voie
    locality: str = ""  # L5 lieu-dit / mention
    city_line: str = ""  # L6 ligne d'acheminement ("75013 PARIS")
    postcode: str = ""
    departement: str = ""
    country: str = ""
    # Not in the extraction (FHIR metadata, SPEC §4.1); the extraction never holds
    # red-listed BALs, so list_rouge is False for imported rows.
    list_rouge: bool = False
    description: str = ""
    responsible: str = ""
    rank: int = 1

    @property
    def city(self) -> str:
        """The city of the L6 line without its postcode ("75013 PARIS" → "PARIS")."""
        line = self.city_line.strip()
        head, _, rest = line.partition(" ")
        return rest.strip() if head.isdigit() and rest else line


@dataclass(frozen=True, slots=True)
class DirectoryProfessional:
    """One exercise situation of a listed professional (RASS / PSC extraction)."""

    id_type_pp: str  # "8" RPPS, "0" ADELI
    id_pp: str
    id_nat_ps: str
    civility: str = ""
    family_name: str = ""
    given_name: str = ""
    profession_code: str = ""
    profession_label: str = ""
    profession_category_code: str = ""
    skill_code: str = ""
    skill_label: str = ""
    org_id: str = ""  # Identifiant technique de la structure / FINESS site / SIRET site
    org_name: str = ""
    postcode: str = ""
    city: str = ""
    departement: str = ""
    email: str = ""  # Adresse e-mail (coord. correspondance), may be an MSSanté BAL
