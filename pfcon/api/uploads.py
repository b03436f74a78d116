"""Uploads stream straight to an unnamed temporary file inside storeBase.

Werkzeug's multipart parser is incremental; we only choose where a file part goes: a
``TemporaryFile`` on the storeBase disk (never memory, never /tmp), which vanishes when the
request ends, however it ends.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import IO

from flask import Request


def streaming_request_class(upload_dir: Path) -> type[Request]:
    class StreamingRequest(Request):
        def _get_file_stream(
            self,
            total_content_length: int | None,
            content_type: str | None,
            filename: str | None = None,
            content_length: int | None = None,
        ) -> IO[bytes]:
            return tempfile.TemporaryFile(dir=upload_dir)

    return StreamingRequest
