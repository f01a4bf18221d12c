"""Client of the Annuaire Santé FHIR API v2 (SPEC §4.1, R50, R51).

* Base ``https://gateway.api.esante.gouv.fr/fhir/v2``; every request carries the
  ``ESANTE-API-KEY`` header (key of the ANS Gravitee portal).
* At most 17 requests per second per application (AS-DOC): one :class:`RateLimiter` per
  client (pass the same one to several clients to share the budget) guarantees that no
  sliding one-second window holds more than 17 requests.
* Only ``GET`` and ``POST [type]/_search`` (PUT and DELETE are forbidden by the gateway):
  the client has no other way to send a request.
* 30 s timeout; searches follow the Bundle ``next`` links (50 resources per page), only
  towards the origin of the base URL (the key is never sent elsewhere).
* Errors raise :class:`AnnuaireError` with the OperationOutcome ``diagnostics`` when the
  server gave one.

:meth:`AnnuaireClient.lookup` resolves an address with ``mailbox-mss:exact`` on
Practitioner, PractitionerRole and Organization — three calls, ``_type`` and batch being
unsupported by the gateway — and filters the BAL type client-side (R51).
"""

from __future__ import annotations

import collections
import ssl
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, NamedTuple
from urllib.parse import urlencode, urlsplit

import httpx

from mssante.formats.fhir_directory import FhirResource
from mssante.formats.fhir_directory_parse import contact_point_fields, mss_contact_points

__all__ = [
    "DEFAULT_BASE_URL",
    "MAX_REQUESTS_PER_SECOND",
    "AnnuaireClient",
    "AnnuaireError",
    "LookupResult",
    "RateLimiter",
]

DEFAULT_BASE_URL = "https://gateway.api.esante.gouv.fr/fhir/v2"
MAX_REQUESTS_PER_SECOND = 17  # AS-DOC api-basics: 17 calls/s per application (R50)
TIMEOUT = 30.0  # AS-DOC: the gateway's timeout
API_KEY_HEADER = "ESANTE-API-KEY"
HOLDERS = ("Practitioner", "PractitionerRole", "Organization")
MAX_PAGES = 10_000  # a guard against a server whose next links loop
_DEFAULT_TYPE = {"Practitioner": "PER", "PractitionerRole": "PER", "Organization": "ORG"}

Params = Mapping[str, str] | Sequence[tuple[str, str]]


def _pairs(params: Params) -> list[tuple[str, str]]:
    return list(params.items()) if isinstance(params, Mapping) else list(params)


class AnnuaireError(Exception):
    """A failed call to the directory (French message, for the user)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class RateLimiter:
    """No more than ``rate`` requests in any sliding window of ``period`` seconds.

    Thread-safe; :meth:`reserve` books the next slot and returns how long to wait for it,
    so a synchronous caller sleeps with :func:`time.sleep` and an asynchronous one could
    use :func:`asyncio.sleep` on the same limiter.
    """

    def __init__(self, rate: int = MAX_REQUESTS_PER_SECOND, period: float = 1.0) -> None:
        if rate < 1 or period <= 0:
            raise ValueError("rate must be >= 1 and period > 0")
        self.rate = rate
        self.period = period
        self._slots: collections.deque[float] = collections.deque(maxlen=rate)
        self._lock = threading.Lock()

    def reserve(self) -> float:
        with self._lock:
            now = time.monotonic()
            slot = now
            if len(self._slots) == self.rate:
                slot = max(now, self._slots[0] + self.period)
            self._slots.append(slot)
            return slot - now

    def wait(self) -> None:
        delay = self.reserve()
        if delay > 0:
            time.sleep(delay)


class LookupResult(NamedTuple):
    """One BAL found by :meth:`AnnuaireClient.lookup`."""

    resource_type: str
    resource: FhirResource
    contact_point: dict[str, Any]

    @property
    def bal_type(self) -> str:
        fields = contact_point_fields(self.contact_point, _DEFAULT_TYPE[self.resource_type])
        return str(fields["bal_type"])

    @property
    def display_name(self) -> str:
        """The holder's name: "Given FAMILY", the structure's name, or a reference display."""
        res = self.resource
        names = res.get("name")
        if isinstance(names, str):
            return names
        if isinstance(names, list) and names and isinstance(names[0], dict):
            given = " ".join(str(g) for g in names[0].get("given", []))
            return " ".join(p for p in (given, str(names[0].get("family", ""))) if p)
        ref = res.get("practitioner")
        return str(ref.get("display", "")) if isinstance(ref, dict) else ""

    @property
    def structure(self) -> str:
        """The structure (PractitionerRole's organization, or the Organization itself)."""
        if self.resource_type == "Organization":
            return str(self.resource.get("name", ""))
        ref = self.resource.get("organization")
        if isinstance(ref, dict):
            return str(ref.get("display") or ref.get("reference") or "")
        return ""


def _diagnostics(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    if isinstance(body, dict) and body.get("resourceType") == "OperationOutcome":
        texts = [
            str(i.get("diagnostics") or i.get("details", {}).get("text") or "")
            for i in body.get("issue", [])
            if isinstance(i, dict)
        ]
        return " ; ".join(t for t in texts if t)
    return ""


class AnnuaireClient:
    """Synchronous client of the Annuaire Santé FHIR API (or of any server shaped like it)."""

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        api_key: str = "",
        *,
        verify: bool | str | ssl.SSLContext = True,
        timeout: float = TIMEOUT,
        limiter: RateLimiter | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        origin = urlsplit(self.base_url)
        if origin.scheme not in ("https", "http") or not origin.netloc:
            raise ValueError("base_url must be an absolute http(s) URL")
        self._origin = (origin.scheme, origin.netloc.lower())
        self.limiter = limiter or RateLimiter()
        headers = {"Accept": "application/fhir+json"}
        if api_key:
            headers[API_KEY_HEADER] = api_key
        self._http = httpx.Client(
            headers=headers, timeout=timeout, verify=verify, transport=transport
        )
        self.requests_sent = 0

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> AnnuaireClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the only two ways to send a request ------------------------------------------------

    def _send(self, request: httpx.Request) -> FhirResource:
        self.limiter.wait()
        self.requests_sent += 1
        try:
            response = self._http.send(request)
        except httpx.TimeoutException:
            raise AnnuaireError("L'annuaire n'a pas répondu dans le délai (30 s).") from None
        except httpx.HTTPError as exc:
            raise AnnuaireError(f"L'annuaire est injoignable : {type(exc).__name__}.") from None
        if response.status_code >= 400:
            detail = _diagnostics(response)
            message = f"L'annuaire a refusé la requête (HTTP {response.status_code})"
            if response.status_code in (401, 403):
                message += " : clé d'API (ESANTE-API-KEY) absente, invalide ou non autorisée"
            elif response.status_code == 429:
                message += " : trop de requêtes (17 par seconde au plus)"
            raise AnnuaireError(
                message + (f". {detail}" if detail else "."), status=response.status_code
            )
        try:
            body = response.json()
        except ValueError:
            raise AnnuaireError("L'annuaire a répondu autre chose que du JSON FHIR.") from None
        if not isinstance(body, dict) or not isinstance(body.get("resourceType"), str):
            raise AnnuaireError("L'annuaire a répondu autre chose qu'une ressource FHIR.")
        return body

    def _get(self, url: str, params: Params | None = None) -> FhirResource:
        self._check_origin(url)
        query = urlencode(_pairs(params)) if params is not None else None
        return self._send(self._http.build_request("GET", url, params=query))

    def _post_search(self, resource_type: str, params: Params) -> FhirResource:
        url = f"{self.base_url}/{self._type(resource_type)}/_search"
        body = urlencode(_pairs(params)).encode("ascii")
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        return self._send(self._http.build_request("POST", url, content=body, headers=headers))

    def _check_origin(self, url: str) -> None:
        parts = urlsplit(url)
        if (parts.scheme, parts.netloc.lower()) != self._origin:
            raise AnnuaireError("Lien de pagination vers un autre serveur refusé.")

    @staticmethod
    def _type(resource_type: str) -> str:
        if not resource_type.isalpha():
            raise ValueError(f"bad resource type {resource_type!r}")
        return resource_type

    # -- FHIR interactions ------------------------------------------------------------------

    def metadata(self) -> FhirResource:
        return self._get(f"{self.base_url}/metadata")

    def read(self, resource_type: str, logical_id: str) -> FhirResource:
        if not logical_id or any(c in logical_id for c in "/?#"):
            raise ValueError("bad logical id")
        return self._get(f"{self.base_url}/{self._type(resource_type)}/{logical_id}")

    def search_bundles(
        self, resource_type: str, params: Params, *, post: bool = False
    ) -> Iterator[FhirResource]:
        """Each Bundle of a search, following ``next`` links to the last page (R50)."""
        if post:
            bundle = self._post_search(resource_type, params)
        else:
            bundle = self._get(f"{self.base_url}/{self._type(resource_type)}", params)
        for _ in range(MAX_PAGES):
            if bundle.get("resourceType") != "Bundle":
                raise AnnuaireError("L'annuaire n'a pas répondu par un Bundle de recherche.")
            yield bundle
            next_url = next(
                (
                    str(link.get("url"))
                    for link in bundle.get("link", [])
                    if isinstance(link, dict) and link.get("relation") == "next"
                ),
                None,
            )
            if not next_url:
                return
            bundle = self._get(next_url)
        raise AnnuaireError("Trop de pages de résultats : recherche interrompue.")

    def search(
        self, resource_type: str, params: Params, *, post: bool = False
    ) -> Iterator[FhirResource]:
        """Every matching resource (``search.mode`` match), all pages."""
        for bundle in self.search_bundles(resource_type, params, post=post):
            for entry in bundle.get("entry", []):
                resource = entry.get("resource") if isinstance(entry, dict) else None
                mode = entry.get("search", {}).get("mode", "match") if resource else None
                if isinstance(resource, dict) and mode == "match":
                    yield resource

    def lookup(self, address: str, bal_types: Sequence[str] = ()) -> list[LookupResult]:
        """The directory's BAL(s) with this exact address (R51); optionally only some types."""
        wanted = address.strip().lower()
        if not wanted or "@" not in wanted:
            raise ValueError("an e-mail address is expected")
        found: list[LookupResult] = []
        for resource_type in HOLDERS:
            for resource in self.search(resource_type, {"mailbox-mss:exact": wanted}):
                for cp in mss_contact_points(resource):
                    if str(cp.get("value", "")).strip().lower() != wanted:
                        continue
                    result = LookupResult(resource_type, resource, cp)
                    if not bal_types or result.bal_type in bal_types:
                        found.append(result)
        return found
