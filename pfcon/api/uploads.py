"""Uploaded file parts go where the storage says while they arrive, never into memory.

Werkzeug's multipart parser is incremental; we only choose the object each file part is
written into: the storage's upload sink (for zip storage, an extractor that unpacks the
zip as it streams in, on the storeBase disk). Every sink is closed when the request ends,
however it ends (even a part cut off mid-body), which removes anything the job did not take.
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
            sink = sink_factory()
            self.__dict__.setdefault("_pfcon_sinks", []).append(sink)
            return sink

        def close(self) -> None:
            """Also close file parts werkzeug never finished (a truncated body) and so never listed."""
            try:
                super().close()
            finally:
                for sink in self.__dict__.get("_pfcon_sinks", ()):
                    sink.close()

    return StreamingRequest
