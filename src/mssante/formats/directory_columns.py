"""Column names of the directory extractions, their field widths, and TRE_G15 labels.

Data for :mod:`mssante.formats.directory_files` (the readers) and
:mod:`mssante.formats.directory_sample` (the synthetic files). Names are those of the
published headers (SPEC §4.3; ``data/annuaire/extractions/*.header.txt``).
"""

from __future__ import annotations

MSSANTE_COLUMNS = (
    "Type de BAL|Adresse BAL|Type Identifiant PP|Identifiant PP|Identification nationale PP|"
    "Type identifiant structure|Identification Structure|Service de rattachement|"
    "Civilité d'exercice|Nom d'exercice|Prénom d'exercice|Catégorie profession|"
    "Libellé de catégorie profession|Code Profession|Libellé Profession|Code savoir-faire|"
    "Libellé savoir-faire|Dématérialisation|Raison Sociale structure BAL|"
    "Enseigne commerciale structure BAL|L2COMPLEMENTLOCALISATION structure BAL|"
    "L3COMPLEMENTDISTRIBUTION structure BAL|L4NUMEROVOIE structure BAL|"
    "L4COMPLEMENTNUMEROVOIE structure BAL|NL4TYPEVOIE structure BAL|"
    "L4LIBELLEVOIE structure BAL|L5LIEUDITMENTION structure BAL|"
    "L6LIGNEACHEMINEMENT structure BAL|Code postal structure BAL|Département structure BAL|"
    "Pays structure BAL"
).split("|")

_STRUCTURE_COORDS = (
    "Complément destinataire (coord. structure)|"
    "Complément point géographique (coord. structure)|Numéro Voie (coord. structure)|"
    "Indice répétition voie (coord. structure)|Code type de voie (coord. structure)|"
)

RASS_COLUMNS = (
    "Type d'identifiant PP|Identifiant PP|Identification nationale PP|"
    "Code civilité d'exercice|Libellé civilité d'exercice|Code civilité|Libellé civilité|"
    "Nom d'exercice|Prénom d'exercice|Code profession|Libellé profession|"
    "Code catégorie professionnelle|Libellé catégorie professionnelle|"
    "Code type savoir-faire|Libellé type savoir-faire|Code savoir-faire|"
    "Libellé savoir-faire|Code mode exercice|Libellé mode exercice|Numéro SIRET site|"
    "Numéro SIREN site|Numéro FINESS site|Numéro FINESS établissement juridique|"
    "Identifiant technique de la structure|Raison sociale site|Enseigne commerciale site|"
    + _STRUCTURE_COORDS
    + "Libellé type de voie (coord. structure)|Libellé Voie (coord. structure)|"
    "Mention distribution (coord. structure)|Bureau cedex (coord. structure)|"
    "Code postal (coord. structure)|Code commune (coord. structure)|"
    "Libellé commune (coord. structure)|Code pays (coord. structure)|"
    "Libellé pays (coord. structure)|Téléphone (coord. structure)|"
    "Téléphone 2 (coord. structure)|Télécopie (coord. structure)|"
    "Adresse e-mail (coord. structure)|Code Département (structure)|"
    "Libellé Département (structure)|Ancien identifiant de la structure|"
    "Autorité d'enregistrement|Code secteur d'activité|Libellé secteur d'activité|"
    "Code section tableau pharmaciens|Libellé section tableau pharmaciens"
).split("|")

PSC_COLUMNS = (
    "Type d'identifiant PP|Identifiant PP|Identification nationale PP|Nom de famille|Prénoms|"
    "Date de naissance|Code commune de naissance|Code pays de naissance|Lieu de naissance|"
    "Code sexe|Téléphone (coord. correspondance)|Adresse e-mail (coord. correspondance)|"
    "Code civilité|Code profession|Code catégorie professionnelle|Code civilité d'exercice|"
    "Nom d'exercice|Prénom d'exercice|Code type savoir-faire|Code savoir-faire|"
    "Code mode exercice|Code secteur d'activité|Code section tableau pharmaciens|Code rôle|"
    "Numéro SIRET site|Numéro SIREN site|Numéro FINESS site|"
    "Numéro FINESS établissement juridique|Identifiant technique de la structure|"
    "Raison sociale site|Enseigne commerciale site|"
    + _STRUCTURE_COORDS
    + "Libellé Voie (coord. structure)|Mention distribution (coord. structure)|"
    "Bureau cedex (coord. structure)|Code postal (coord. structure)|"
    "Code commune (coord. structure)|Code pays (coord. structure)|"
    "Téléphone (coord. structure)|Téléphone 2 (coord. structure)|"
    "Télécopie (coord. structure)|Adresse e-mail (coord. structure)|"
    "Code département (coord. structure)|Ancien identifiant de la structure|"
    "Autorité d'enregistrement"
).split("|")

# TRE_G15-ProfessionSante (labels of JDV_J01, data/xds-metadata): the PSC file has codes only.
TRE_G15 = {
    "10": "Médecin", "21": "Pharmacien", "26": "Audioprothésiste", "28": "Opticien-Lunetier",
    "31": "Assistant dentaire", "32": "Physicien médical", "35": "Aide-soignant",
    "36": "Ambulancier", "37": "Auxiliaire de puériculture",
    "38": "Préparateur en pharmacie hospitalière", "39": "Préparateur en pharmacie (officine)",
    "40": "Chirurgien-Dentiste", "50": "Sage-Femme", "60": "Infirmier",
    "69": "Infirmier psychiatrique", "70": "Masseur-Kinésithérapeute",
    "80": "Pédicure-Podologue", "81": "Orthoprothésiste", "82": "Podo-Orthésiste",
    "83": "Orthopédiste-Orthésiste", "84": "Oculariste", "85": "Epithésiste",
    "86": "Technicien de laboratoire médical", "91": "Orthophoniste", "92": "Orthoptiste",
    "93": "Psychologue", "94": "Ergothérapeute", "95": "Diététicien", "96": "Psychomotricien",
    "98": "Manipulateur ERM",
}  # fmt: skip

# Column widths of storage/schema_directory.py (a test checks they agree): a longer value
# is a bad row, never a failed batch.
ENTRY_WIDTHS = (
    3, 320, 2, 32, 32, 4, 32, 255, 32, 255, 255, 8, 255, 16, 255, 32, 255, 16, 255, 255,
    255, 255, 16, 16, 32, 255, 255, 255, 16, 64, 64,
)  # fmt: skip
PROFESSIONAL_WIDTHS = (2, 32, 32, 32, 255, 255, 16, 255, 8, 32, 255, 32, 255, 16, 255, 64, 320)
