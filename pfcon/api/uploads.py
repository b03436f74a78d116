"""What each route accepts in its request body, enforced while the body is read.

Werkzeug reads a body lazily, when a view first asks for ``request.form``, ``request.files``
or ``request.get_json()`` (so always after the blueprint's token check). Each view declares
its body with :func:`accepts`: a size limit, and the file parts it takes, each with the sink
it is written into while it arrives (for zip storage an extractor on the storeBase disk) or
:data:`IGNORED` (read and dropped, e.g. the stray ``data_file`` python-pfconclient 4's CLI
sends with every pfcon 6 request). A view that declares nothing takes a small body without
file parts. Any other file part is a 400 before a byte of it is stored; all non-file fields
of a form together are capped, and so is the number of parts. Every sink is closed when the
request ends, however it ends, which removes anything the job did not take.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import IO, Any
from urllib.parse import parse_qsl

from flask import Request, current_app
from werkzeug.datastructures import FileStorage, MultiDict
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.formparser import FormDataParser

from pfcon.api.multipart import CHUNK, MultipartReader, Part, Readinto
from pfcon.errors import InvalidInput
from pfcon.serving import direct_body

KiB, MiB = 1024, 1024 * 1024
SMALL_BODY = 64 * KiB  # what a view that declares nothing accepts
FIELDS_LIMIT = 4 * MiB  # all non-file fields of one form together
PARTS_LIMIT = 500  # parts of one form (ChRIS sends under 100)

SinkFactory = Callable[[], IO[bytes]]
IGNORED = None  # a file part that is read and dropped


@dataclass(frozen=True)
class BodyRules:
    """A view's body: at most ``max_bytes``, and only the file parts named in ``files``."""

    max_bytes: int = SMALL_BODY
    files: Mapping[str, SinkFactory | None] = field(default_factory=dict)


DEFAULT_RULES = BodyRules()


def accepts(max_bytes: int, files: Mapping[str, SinkFactory | None] | None = None):
    """Declare a view's body: at most ``max_bytes``, and the file parts it takes."""

    def mark(view: Callable[..., Any]) -> Callable[..., Any]:
        view.body_rules = BodyRules(max_bytes, dict(files or {}))  # type: ignore[attr-defined]
        return view

    return mark


class _Discard:
    """The sink of an ignored file part."""

    def write(self, data: bytes) -> int:
        return len(data)

    def seek(self, *_args: object) -> int:
        return 0

    def close(self) -> None:
        pass


def parse_multipart(
    readinto: Readinto,
    boundary: bytes,
    rules: BodyRules,
    opened: list[IO[bytes]],
    content_length: int | None = None,
) -> tuple[MultiDict, MultiDict]:
    """Fields and completed file parts of a multipart body; each sink is appended to ``opened``.

    The reader's buffer is no larger than a body of known length needs: a small submit (about
    1 KiB) had a fresh, zeroed 1 MiB of its own, each of 8-16 concurrent ones alike.
    """
    fields: list[tuple[str, str]] = []
    files: list[tuple[str, FileStorage]] = []
    field_bytes = parts = 0
    part: Part | None = None
    sink: IO[bytes] | None = None
    values: list[bytes] = []

    def end_part() -> None:
        if part is None:
            return
        if part.filename is None:
            fields.append((part.name, b"".join(values).decode("utf-8", "replace")))
        elif not isinstance(sink, _Discard):
            files.append((part.name, FileStorage(sink, part.filename, part.name, headers=part.headers)))

    chunk = CHUNK if content_length is None else min(CHUNK, content_length)
    reader = MultipartReader(readinto, boundary, chunk)
    for item in reader:
        if isinstance(item, Part):
            end_part()
            parts += 1
            if parts > PARTS_LIMIT:
                raise RequestEntityTooLarge()
            part, sink, values = item, None, []
            if item.filename is not None:
                sink = _open_file_part(item, rules)
                opened.append(sink)
        elif sink is not None:
            sink.write(item)
            reader.pass_through(_data_ahead(sink))
        else:
            field_bytes += len(item)
            if field_bytes > FIELDS_LIMIT:
                raise RequestEntityTooLarge()
            values.append(bytes(item))
    end_part()
    return MultiDict(fields), MultiDict(files)


def _data_ahead(sink: IO[bytes]) -> int:
    """How many bytes after those written the sink takes as data whatever they hold (a zip
    entry of known size), so the reader need not look for the boundary in them."""
    ahead = getattr(sink, "data_ahead", None)
    return ahead() if ahead is not None else 0


def _open_file_part(event: Part, rules: BodyRules) -> IO[bytes]:
    if event.name not in rules.files:
        raise InvalidInput(
            f"{event.name}: file parts are not accepted here"
            + (f" (only {', '.join(sorted(rules.files))})" if rules.files else "")
        )
    factory = rules.files[event.name]
    return _Discard() if factory is IGNORED else factory()


class _RuledFormParser(FormDataParser):
    def __init__(self, request: RuledRequest) -> None:
        super().__init__(max_content_length=request.max_content_length, cls=MultiDict)
        self.request = request

    def _parse_multipart(self, stream, mimetype, content_length, options):  # type: ignore[override]
        boundary = options.get("boundary", "").encode("ascii")
        if not boundary:
            raise ValueError("Missing boundary")
        readinto = direct_body(self.request.environ) or stream.readinto
        rules, sinks = self.request.body_rules, self.request.sinks
        form, files = parse_multipart(readinto, boundary, rules, sinks, content_length)
        return stream, form, files

    def _parse_urlencoded(self, stream, mimetype, content_length, options):  # type: ignore[override]
        data = stream.read(FIELDS_LIMIT + 1)
        if len(data) > FIELDS_LIMIT:
            raise RequestEntityTooLarge()
        items = parse_qsl(data.decode("utf-8", "replace"), keep_blank_values=True)
        return stream, MultiDict(items), MultiDict()


class RuledRequest(Request):
    """A request whose body obeys the rules its view declared with :func:`accepts`."""

    @property
    def body_rules(self) -> BodyRules:
        if "_body_rules" not in self.__dict__:
            view = current_app.view_functions.get(self.endpoint) if self.endpoint else None
            self.__dict__["_body_rules"] = getattr(view, "body_rules", DEFAULT_RULES)
        return self.__dict__["_body_rules"]

    @property
    def max_content_length(self) -> int:  # type: ignore[override]
        return self.body_rules.max_bytes

    @property
    def sinks(self) -> list[IO[bytes]]:
        return self.__dict__.setdefault("_pfcon_sinks", [])

    def make_form_data_parser(self) -> FormDataParser:
        return _RuledFormParser(self)

    def close(self) -> None:
        """Also close file parts the parser never finished (a truncated body) and so never listed."""
        try:
            super().close()
        finally:
            for sink in self.sinks:
                sink.close()
