"""Request bodies of a send, read as they stream in: never held whole in memory.

* ``application/json``: read up to ``max_request_bytes``; beyond, 413 at once.
* ``multipart/form-data`` (RFC 7578): a ``message`` part (the JSON object, at most 1 MiB)
  and file parts named ``attachment`` or ``document``. python-multipart's push parser gets
  the body chunk by chunk; each file goes to a spooled temporary file (in memory up to
  1 MiB, then on disk) while its SHA-256 is computed. The total of the files is checked
  against the limit as it grows, and against the limit of the recipients (R29: 25 MiB
  towards a patient) as soon as the ``message`` part has named them.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any

from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from mssante.http.api.problems import ApiProblem

SPOOL_BYTES = 1024 * 1024
MAX_MESSAGE_PART = 1024 * 1024
MAX_PARTS = 120
MAX_PART_HEADER = 8 * 1024
FILE_FIELDS = ("attachment", "document")


class MemoryContent:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def read_all(self) -> bytes:
        return self.data


class SpooledContent:
    def __init__(self, file: IO[bytes]) -> None:
        self.file = file

    def read_all(self) -> bytes:
        self.file.seek(0)
        return self.file.read()


@dataclass
class UploadedFile:
    field: str
    filename: str
    content_type: str
    file: IO[bytes]
    size: int = 0
    sha256: str = ""


@dataclass
class Upload:
    message: dict[str, Any]
    files: list[UploadedFile] = field(default_factory=list)

    def close(self) -> None:
        for item in self.files:
            item.file.close()


def too_large(detail: str) -> ApiProblem:
    return ApiProblem(413, "message-too-large", detail)


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def read_json(request: Request, limit: int) -> Any:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large(f"Le corps de la requête dépasse {limit} octets.")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_large(f"Le corps de la requête dépasse {limit} octets.")
    try:
        return json.loads(bytes(body))
    except (UnicodeDecodeError, ValueError):
        raise ApiProblem(400, "invalid-request", "Le corps n'est pas un JSON valide.") from None


# limit_for(message object) -> (bytes allowed for the files, French detail when exceeded)
LimitFor = Callable[[dict[str, Any]], tuple[int, str]]


async def read_multipart(request: Request, limit: int, limit_for: LimitFor) -> Upload:
    """The ``message`` object and the spooled files of a multipart/form-data body."""
    _, params = parse_options_header(request.headers.get("content-type", ""))
    boundary = params.get(b"boundary")
    if not boundary or len(boundary) > 200:
        raise ApiProblem(400, "invalid-request", "Frontière (boundary) multipart absente.")
    state = _State(limit=limit, detail=f"Le corps de la requête dépasse {limit} octets.")
    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": state.part_begin,
            "on_part_data": state.part_data,
            "on_part_end": state.part_end,
            "on_header_field": state.header_field,
            "on_header_value": state.header_value,
            "on_header_end": state.header_end,
            "on_headers_finished": state.headers_finished,
        },
    )
    try:
        async for chunk in request.stream():
            state.received += len(chunk)
            if state.received > limit + 64 * 1024:  # room for the part headers
                raise too_large(state.detail)
            try:
                parser.write(chunk)
            except ApiProblem:
                raise
            except Exception:  # noqa: BLE001 - python-multipart's parse errors
                raise ApiProblem(400, "invalid-request", "Corps multipart mal formé.") from None
            if state.message is not None and not state.limited:
                state.limited = True
                state.limit, state.detail = limit_for(state.message)
                state.check()
        try:
            parser.finalize()
        except Exception:  # noqa: BLE001
            raise ApiProblem(400, "invalid-request", "Corps multipart mal formé.") from None
        if state.message is None:
            raise ApiProblem(
                400, "invalid-request", "La partie « message » (JSON) est obligatoire."
            )
        if not state.limited:
            state.limit, state.detail = limit_for(state.message)
            state.check()
        return Upload(state.message, state.files)
    except BaseException:
        for item in state.files:
            item.file.close()
        raise


@dataclass
class _State:
    limit: int
    detail: str
    received: int = 0
    limited: bool = False
    message: dict[str, Any] | None = None
    files: list[UploadedFile] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    _field: bytearray = field(default_factory=bytearray)
    _value: bytearray = field(default_factory=bytearray)
    _header_bytes: int = 0
    _current: UploadedFile | None = None
    _hash: Any = None
    _json: bytearray | None = None
    _parts: int = 0

    def total(self) -> int:
        return sum(f.size for f in self.files)

    def check(self) -> None:
        if self.total() > self.limit:
            raise too_large(self.detail)

    def part_begin(self) -> None:
        self._parts += 1
        if self._parts > MAX_PARTS:
            raise ApiProblem(400, "invalid-request", f"Au plus {MAX_PARTS} parties.")
        self.headers, self._header_bytes = {}, 0
        self._current, self._json = None, None

    def header_field(self, data: bytes, start: int, end: int) -> None:
        self._grow(end - start)
        self._field += data[start:end]

    def header_value(self, data: bytes, start: int, end: int) -> None:
        self._grow(end - start)
        self._value += data[start:end]

    def _grow(self, size: int) -> None:
        self._header_bytes += size
        if self._header_bytes > MAX_PART_HEADER:
            raise ApiProblem(400, "invalid-request", "En-têtes de partie trop longs.")

    def header_end(self) -> None:
        name = self._field.decode("latin-1").strip().lower()
        self.headers[name] = self._value.decode("utf-8", "replace").strip()
        self._field, self._value = bytearray(), bytearray()

    def headers_finished(self) -> None:
        _, params = parse_options_header(self.headers.get("content-disposition", ""))
        name = params.get(b"name", b"").decode("utf-8", "replace")
        filename = params.get(b"filename", b"").decode("utf-8", "replace")
        if name == "message":
            if self.message is not None or self._json is not None:
                raise ApiProblem(400, "invalid-request", "Une seule partie « message ».")
            self._json = bytearray()
            return
        if name not in FILE_FIELDS:
            raise ApiProblem(
                400, "invalid-request", "Parties acceptées : message, attachment, document."
            )
        ctype = self.headers.get("content-type", "application/octet-stream")
        base = filename.replace("\\", "/").rpartition("/")[2].strip()
        self._current = UploadedFile(
            field=name,
            filename=base[:255] or ("document" if name == "document" else "piece-jointe"),
            content_type=ctype.split(";")[0].strip().lower()[:255] or "application/octet-stream",
            file=tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES),
        )
        self._hash = hashlib.sha256()
        self.files.append(self._current)

    def part_data(self, data: bytes, start: int, end: int) -> None:
        chunk = data[start:end]
        if self._json is not None:
            self._json += chunk
            if len(self._json) > MAX_MESSAGE_PART:
                raise ApiProblem(400, "invalid-request", "La partie « message » dépasse 1 Mio.")
            return
        if self._current is None:
            return
        self._current.file.write(chunk)
        self._current.size += len(chunk)
        self._hash.update(chunk)
        self.check()

    def part_end(self) -> None:
        if self._json is not None:
            try:
                value = json.loads(bytes(self._json))
            except (UnicodeDecodeError, ValueError):
                raise ApiProblem(
                    400, "invalid-request", "La partie « message » n'est pas un JSON valide."
                ) from None
            if not isinstance(value, dict):
                raise ApiProblem(
                    400, "invalid-request", "La partie « message » doit être un objet."
                )
            self.message = value
            self._json = None
        elif self._current is not None:
            self._current.sha256 = self._hash.hexdigest()
            self._current = None
