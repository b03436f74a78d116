"""Uploaded file parts go where the storage says while they arrive, never into memory.

Werkzeug's multipart parser is incremental; we only choose the object each file part is
written into: the storage's upload sink (for zip storage, an extractor that unpacks the
zip as it streams in, on the storeBase disk). Werkzeug closes it when the request ends,
however it ends, which removes anything the job did not take.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import IO

from flask import Request


def streaming_request_class(sink_factory: Callable[[], IO[bytes]]) -> type[Request]:
    class StreamingRequest(Request):
        def _get_file_stream(
            self,
            total_content_length: int | None,
            content_type: str | None,
            filename: str | None = None,
            content_length: int | None = None,
        ) -> IO[bytes]:
            return sink_factory()

    return StreamingRequest
