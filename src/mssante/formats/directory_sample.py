"""Realistic synthetic directory extractions, in the exact published formats (issue 5).

The real files are large and not in the repository; tests and benchmarks use these. The
output is deterministic for a seed: person ``k`` is drawn from a digest of ``(seed, k)``, so
the same person (same RPPS, name, profession, city) appears in a ``mssante`` file and in a
``rass``/``psc`` file made with the same seed. Identifiers are valid: RPPS with their Luhn
key (R53), idNat_PS = ``8`` + RPPS (R54), FINESS with their Luhn key (R56). About 85 % of the
BAL rows are ``PER`` and 15 % ``ORG``; about 2 % of the persons are known by ADELI only.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator
from hashlib import blake2b
from typing import IO

from mssante.formats.directory_columns import TRE_G15
from mssante.formats.directory_files import FORMATS, MSSANTE, FileFormat, luhn_ok

# (city, postcode, département code, département label)
CITIES = (
    ("Paris", "75013", "75", "Paris"), ("Paris", "75015", "75", "Paris"),
    ("Marseille", "13005", "13", "Bouches-du-Rhône"), ("Lyon", "69003", "69", "Rhône"),
    ("Toulouse", "31000", "31", "Haute-Garonne"), ("Nice", "06000", "06", "Alpes-Maritimes"),
    ("Nantes", "44000", "44", "Loire-Atlantique"), ("Montpellier", "34000", "34", "Hérault"),
    ("Strasbourg", "67000", "67", "Bas-Rhin"), ("Bordeaux", "33000", "33", "Gironde"),
    ("Lille", "59000", "59", "Nord"), ("Rennes", "35000", "35", "Ille-et-Vilaine"),
    ("Reims", "51100", "51", "Marne"), ("Saint-Étienne", "42000", "42", "Loire"),
    ("Le Havre", "76600", "76", "Seine-Maritime"), ("Toulon", "83000", "83", "Var"),
    ("Grenoble", "38000", "38", "Isère"), ("Dijon", "21000", "21", "Côte-d'Or"),
    ("Angers", "49000", "49", "Maine-et-Loire"), ("Nîmes", "30000", "30", "Gard"),
    ("Clermont-Ferrand", "63000", "63", "Puy-de-Dôme"), ("Le Mans", "72000", "72", "Sarthe"),
    ("Aix-en-Provence", "13100", "13", "Bouches-du-Rhône"), ("Brest", "29200", "29", "Finistère"),
    ("Tours", "37000", "37", "Indre-et-Loire"), ("Amiens", "80000", "80", "Somme"),
    ("Limoges", "87000", "87", "Haute-Vienne"), ("Annecy", "74000", "74", "Haute-Savoie"),
    ("Perpignan", "66000", "66", "Pyrénées-Orientales"), ("Besançon", "25000", "25", "Doubs"),
    ("Metz", "57000", "57", "Moselle"), ("Orléans", "45000", "45", "Loiret"),
    ("Rouen", "76000", "76", "Seine-Maritime"), ("Caen", "14000", "14", "Calvados"),
    ("Nancy", "54000", "54", "Meurthe-et-Moselle"), ("Poitiers", "86000", "86", "Vienne"),
    ("Pau", "64000", "64", "Pyrénées-Atlantiques"),
    ("La Rochelle", "17000", "17", "Charente-Maritime"),
    ("Ajaccio", "20000", "2A", "Corse-du-Sud"), ("Bastia", "20200", "2B", "Haute-Corse"),
    ("Fort-de-France", "97200", "972", "Martinique"), ("Saint-Denis", "97400", "974", "La Réunion"),
    ("Cayenne", "97300", "973", "Guyane"), ("Pointe-à-Pitre", "97110", "971", "Guadeloupe"),
    ("Béziers", "34500", "34", "Hérault"), ("Colmar", "68000", "68", "Haut-Rhin"),
    ("Quimper", "29000", "29", "Finistère"), ("Valence", "26000", "26", "Drôme"),
    ("Chambéry", "73000", "73", "Savoie"), ("Troyes", "10000", "10", "Aube"),
    ("Vannes", "56000", "56", "Morbihan"), ("Bourg-en-Bresse", "01000", "01", "Ain"),
    ("Évreux", "27000", "27", "Eure"), ("Châteauroux", "36000", "36", "Indre"),
    ("Saint-Malo", "35400", "35", "Ille-et-Vilaine"),
    ("Bayonne", "64100", "64", "Pyrénées-Atlantiques"),
    ("Créteil", "94000", "94", "Val-de-Marne"), ("Saint-Denis", "93200", "93", "Seine-Saint-Denis"),
    ("Versailles", "78000", "78", "Yvelines"), ("Évry-Courcouronnes", "91000", "91", "Essonne"),
)  # fmt: skip

FAMILY_NAMES = (
    (
        "Martin Bernard Thomas Petit Robert Richard Durand Dubois Moreau Laurent Simon Michel "
        "Lefèvre Leroy Roux David Bertrand Morel Fournier Girard Bonnet Dupont Lambert Fontaine "
        "Rousseau Vincent Müller Mercier Boyer Blanc Guérin Garnier Chevalier François Legrand "
        "Gauthier Garcia Perrin Robin Clément Morin Nicolas Henry Roussel Mathieu Masson Marchand "
        "Duval Denis Dumont Lemaire Noël Meyer Dufour Meunier Brun Blanchard Giraud Joly Rivière "
        "Lucas Brunet Gaillard Barbier Arnaud Martínez Gérard Roche Renard Schmitt Roy Leroux "
        "Colin Vidal Caron Picard Roger Fabre Aubert Lemoine Renaud Dumas Lacroix Olivier "
        "Philippe Bourgeois Pierre Benoît Rey Leclerc Payet Rolland Guillaume Lecomte Lopez Jean "
        "Dupuy Guillot Hubert Berger Carpentier Sánchez Dupuis Moulin Louis Deschamps Huet "
        "Vasseur Perez Boucher Fleury Royer Klein Jacquet Adam Paris Poirier Marty Aubry Guyot "
        "Carré Charles Renault Charpentier Ménard Maillard Baron Bertin Bailly Hervé Schneider "
        "Fernandez Le_Gall Collet Léger Bouvier Julien Prévost Millet Perrot Daniel Le_Roux "
        "Cousin Germain Breton Besson Langlois Rémy Le_Goff Pelletier Lévêque Perrier Leblanc "
        "Barré Lebrun Marchal Weber Mallet Hamon Boulanger Jacob Monnier Michaud Rodriguez "
        "Guichard Gillet Étienne Grondin Poulain Tessier Chevallier Collin Chauvin Da_Silva "
        "Bouchet Gay Lemaître Bénard Maréchal Humbert Reynaud Antoine Hoarau Perret Barthélemy "
        "Cordier Pichon Lejeune Gilbert Lamy Delaunay Pasquier Carlier Laporte N'Diaye Lefèbvre"
    )
    .replace("_", " ")
    .split(" ")
)

GIVEN_MALE = (
    "Jean Pierre Michel André Philippe René Louis Alain Jacques Bernard Marcel Daniel Roger "
    "Robert Paul Claude Christian Henri Georges Nicolas François Patrick Gérard Christophe "
    "Joseph Julien Jérôme Stéphane Frédéric Sébastien Benoît Grégoire Rémi Léo Gaël Joël Noël "
    "Loïc Hervé Raphaël Mathéo Timothée Jean-François Éric Jérémie Félix"
).split(" ")
GIVEN_FEMALE = (
    "Marie Léa Chloé Zoé Inès Anaïs Élodie Hélène Cécile Françoise Agnès Noémie Maëlle "
    "Aurélie Céline Émilie Mélanie Valérie Nathalie Sophie Isabelle Camille Manon Maïwenn "
    "Thérèse Geneviève Clémence Amélie Solène Océane Bérénice Anne-Sophie Marie-Hélène "
    "Ségolène Anaëlle"
).split(" ")

# (G15 code, weight, BAL subdomain, civility d'exercice, [(skill code, label)])
PROFESSIONS = (
    ("10", 40, "medecin", "DR", (
        ("SM26", "Qualifié en Médecine Générale"), ("SM54", "Médecine Générale"),
        ("SM04", "Cardiologie et maladies vasculaires"), ("SM02", "Anesthésie-réanimation"),
        ("SM40", "Pédiatrie"), ("SM42", "Psychiatrie"), ("SM15", "Dermatologie et vénéréologie"),
    )),
    ("21", 14, "pharmacien", "", ()),
    ("60", 16, "infirmier", "", ()),
    ("70", 8, "masseur-kinesitherapeute", "", ()),
    ("40", 7, "chirurgien-dentiste", "DR", (("SCD01", "Orthopédie dento-faciale"),)),
    ("50", 5, "sage-femme", "", ()),
    ("91", 3, "orthophoniste", "", ()),
    ("80", 2, "pedicure-podologue", "", ()),
    ("28", 2, "opticien", "", ()),
    ("95", 1, "dieteticien", "", ()),
    ("96", 1, "psychomotricien", "", ()),
    ("26", 1, "audioprothesiste", "", ()),
)  # fmt: skip
_PROFESSION_TABLE = tuple(p for p in PROFESSIONS for _ in range(p[1]))

SERVICES = (
    "Cardiologie", "Urgences", "Pédiatrie", "Maternité", "Gériatrie", "Oncologie",
    "Radiologie", "Laboratoire de biologie médicale", "Pharmacie à usage intérieur",
    "Secrétariat médical", "Médecine interne", "Chirurgie orthopédique", "Psychiatrie adulte",
    "Service social", "Accueil de jour", "Équipe mobile de soins palliatifs",
)  # fmt: skip
ORG_KINDS = (
    ("CENTRE HOSPITALIER", "ch"), ("EHPAD LES JARDINS DE", "ehpad"),
    ("CLINIQUE SAINT-JOSEPH DE", "clinique"), ("CENTRE DE SANTÉ DE", "cds"),
    ("SSIAD DE", "ssiad"), ("MAISON DE SANTÉ PLURIPROFESSIONNELLE DE", "msp"),
    ("DISPOSITIF D'APPUI À LA COORDINATION DE", "dac"), ("IME LES CHÊNES DE", "ime"),
)  # fmt: skip
STREETS = (
    ("R", "DE LA RÉPUBLIQUE"), ("AV", "VICTOR HUGO"), ("BD", "JEAN JAURÈS"),
    ("R", "PASTEUR"), ("PL", "DU GÉNÉRAL DE GAULLE"), ("R", "DES ÉCOLES"), ("AV", "DE LA GARE"),
    ("CHE", "DES VIGNES"), ("R", "NATIONALE"), ("ALL", "DES TILLEULS"), ("QU", "DES ORFÈVRES"),
    ("R", "SAINTE-CATHERINE"), ("IMP", "DU MOULIN"), ("BD", "DE L'HÔPITAL"),
)  # fmt: skip


def ascii_fold(text: str) -> str:
    """ "Hélène Müller" → "Helene Muller" (addresses and L6 lines are plain ASCII)."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def _key(payload: str) -> str:
    """The Luhn digit that makes ``payload + digit`` valid."""
    for digit in "0123456789":
        if luhn_ok(payload + digit):
            return digit
    raise AssertionError("unreachable")


def rpps_for(seed: int, k: int) -> str:
    """The RPPS of person ``k``: 11 digits with a valid Luhn key, unique per ``k``."""
    payload = "1" + f"{(k * 7919 + seed * 104729 + 3_000_000) % 1_000_000_000:09d}"
    return payload + _key(payload)


def finess_for(dept: str, n: int) -> str:
    prefix = dept if dept.isdigit() and len(dept) == 2 else "75"
    payload = prefix + f"{n % 1_000_000:06d}"
    return payload + _key(payload)


def _label_line(postcode: str, city: str) -> str:
    return f"{postcode} {ascii_fold(city).upper().replace('-', ' ')}"


class _Person:
    __slots__ = ("adeli", "city", "civility", "d", "family", "female", "given", "id_nat",
                 "id_pp", "id_type", "k", "number", "profession", "skill", "street")  # fmt: skip

    def __init__(self, seed: int, k: int) -> None:
        d = blake2b(f"{seed}:{k}".encode(), digest_size=16).digest()
        self.k, self.d = k, d
        self.adeli = d[0] < 5  # ~2 %: ADELI only
        if self.adeli:
            payload = f"{10 + d[1] % 85:02d}" + f"{(k * 31 + seed) % 1_000_000:06d}"
            self.id_type, self.id_pp = "0", payload + _key(payload)
        else:
            self.id_type, self.id_pp = "8", rpps_for(seed, k)
        self.id_nat = self.id_type + self.id_pp
        self.family = FAMILY_NAMES[int.from_bytes(d[2:4]) % len(FAMILY_NAMES)]
        self.female = d[6] % 2 == 0
        names = GIVEN_FEMALE if self.female else GIVEN_MALE
        self.given = names[int.from_bytes(d[4:6]) % len(names)]
        self.profession = _PROFESSION_TABLE[d[7] % len(_PROFESSION_TABLE)]
        skills = self.profession[4]
        self.skill = skills[d[8] % len(skills)] if skills else ("", "")
        civ = self.profession[3]
        self.civility = civ or ("MME" if self.female else "M")
        self.city = CITIES[int.from_bytes(d[9:11]) % len(CITIES)]
        self.street = STREETS[d[11] % len(STREETS)]
        self.number = str(1 + d[12] % 120)

    def local_part(self) -> str:
        name = ascii_fold(f"{self.given}.{self.family}").lower()
        return name.replace(" ", "-").replace("'", "") + str(self.k)


def _mssante_row(seed: int, i: int) -> list[str]:
    p = _Person(seed, i)
    city, postcode, dept, _ = p.city
    street_type, street = p.street
    if p.d[13] < 38:  # ~15 % ORG
        org_label, org_short = ORG_KINDS[p.d[14] % len(ORG_KINDS)]
        service = SERVICES[p.d[15] % len(SERVICES)]
        slug = ascii_fold(city).lower().replace(" ", "-").replace("'", "")
        address = (
            f"{ascii_fold(service).lower().replace(' ', '.')}.{i}@{org_short}-{slug}.mssante.fr"
        )
        org = f"{org_label} {city.upper()}"
        return ["ORG", address, "", "", "", "1", "1" + finess_for(dept, i), service, "", "", "",
                "", "", "", "", "", "", "", org, org, "", "", p.number, "", street_type, street,
                "", _label_line(postcode, city), postcode, dept, "FRANCE"]  # fmt: skip
    code, _, sub, _, _ = p.profession
    skill_code, skill_label = p.skill
    address = f"{p.local_part()}@{sub}.mssante.fr"
    cabinet = f"CABINET {p.family.upper()}"
    return ["PER", address, p.id_type, p.id_pp, p.id_nat, "", "", "", p.civility,
            p.family.upper(), p.given, "C", "Civil", code, TRE_G15[code], skill_code, skill_label,
            "", cabinet, "", "", "", p.number, "", street_type, street, "",
            _label_line(postcode, city), postcode, dept, "FRANCE"]  # fmt: skip


def _situation(fmt: FileFormat, p: _Person, n: int) -> list[str]:
    """One exercise situation of person ``p`` as a RASS or PSC row."""
    city, postcode, dept, dept_label = p.city
    street_type, street = p.street
    code = p.profession[0]
    skill_code, skill_label = p.skill
    payload = f"{(int.from_bytes(p.d[:4]) + n) % 10**8:08d}"
    body = payload + _key(payload) + f"{10 + n:04d}"  # SIREN + NIC (R57)
    siret = body + _key(body)
    values = {
        "Type d'identifiant PP": p.id_type,
        "Identifiant PP": p.id_pp,
        "Identification nationale PP": p.id_nat,
        "Code civilité d'exercice": p.profession[3],
        "Libellé civilité d'exercice": "Docteur" if p.profession[3] == "DR" else "",
        "Code civilité": "MME" if p.female else "M",
        "Libellé civilité": "Madame" if p.female else "Monsieur",
        "Nom de famille": p.family.upper(),
        "Prénoms": p.given + "'",
        "Nom d'exercice": p.family.upper(),
        "Prénom d'exercice": p.given,
        "Code profession": code,
        "Libellé profession": TRE_G15[code],
        "Code catégorie professionnelle": "C",
        "Libellé catégorie professionnelle": "Civil",
        "Code type savoir-faire": "S" if skill_code else "",
        "Libellé type savoir-faire": "Spécialité ordinale" if skill_code else "",
        "Code savoir-faire": skill_code,
        "Libellé savoir-faire": skill_label,
        "Code mode exercice": "L" if n == 0 else "S",
        "Libellé mode exercice": "Libéral" if n == 0 else "Salarié",
        "Numéro SIRET site": siret,
        "Numéro SIREN site": siret[:9],
        "Identifiant technique de la structure": "R" + siret,
        "Raison sociale site": f"CABINET {p.family.upper()}",
        "Numéro Voie (coord. structure)": p.number,
        "Code type de voie (coord. structure)": street_type,
        "Libellé Voie (coord. structure)": street,
        "Bureau cedex (coord. structure)": _label_line(postcode, city),
        "Code postal (coord. structure)": postcode,
        "Libellé commune (coord. structure)": city,
        "Code pays (coord. structure)": "99000",
        "Libellé pays (coord. structure)": "France",
        "Code Département (structure)": dept,
        "Libellé Département (structure)": dept_label,
        "Code département (coord. structure)": dept,
        "Adresse e-mail (coord. structure)": f"cabinet{p.k}@example.fr" if n == 0 else "",
        "Autorité d'enregistrement": "CNOM/CNOM/CNOM" if code == "10" else "ARS/ARS/ARS",
    }
    return [values.get(c, "") for c in fmt.columns] + ([""] if fmt.trailing_separator else [])


def sample_lines(fmt: FileFormat | str, rows: int, seed: int = 1) -> Iterator[str]:
    """The header, then ``rows`` data lines (without line ends) of a synthetic extraction."""
    fmt = FORMATS[fmt] if isinstance(fmt, str) else fmt
    yield fmt.header
    if fmt is MSSANTE:
        for i in range(rows):
            yield "|".join(_mssante_row(seed, i))
        return
    emitted, k = 0, 0
    while emitted < rows:
        person = _Person(seed, k)
        situations = 1 + (person.d[15] % 3 == 0)  # a third of them work in two places
        for n in range(min(situations, rows - emitted)):
            yield "|".join(_situation(fmt, person, n))
            emitted += 1
        k += 1


def write_sample(out: IO[bytes], fmt: FileFormat | str, rows: int, seed: int = 1) -> None:
    """Write a synthetic extraction to a binary stream (UTF-8, ``\\n`` line ends)."""
    batch: list[str] = []
    for line in sample_lines(fmt, rows, seed):
        batch.append(line)
        if len(batch) >= 5000:
            out.write(("\n".join(batch) + "\n").encode())
            batch.clear()
    if batch:
        out.write(("\n".join(batch) + "\n").encode())
