"""One S3 bucket (an :class:`ObjectStore`) through boto3, for AWS and self-hosted servers alike.

Requests use path-style addressing (``http://host/bucket/key``: self-hosted servers rarely have
a DNS name per bucket), Signature V4, and no optional CRC checksums (many S3 servers refuse
them; Swift's s3api does). botocore's standard retry mode retries throttling, 5xx and dropped
connections with jittered exponential backoff; what still fails leaves here as a domain error
(:class:`StorageUnavailable`: a 503 with a message). Transfers go through one s3transfer
manager per call: a bounded pool of requests, files streamed from and to disk in chunks,
multipart uploads from ``S3_MULTIPART_THRESHOLD`` on (aborted if they fail), ranged parallel
downloads of large objects.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any

import boto3
from boto3.s3.transfer import TransferConfig, create_transfer_manager
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from s3transfer.exceptions import RetriesExceededError
from s3transfer.futures import TransferFuture
from s3transfer.manager import TransferManager
from s3transfer.subscribers import BaseSubscriber

from pfcon.errors import StorageUnavailable
from pfcon.settings import S3_MAX_PART, S3Settings
from pfcon.storage.copying import COPY_WORKERS
from pfcon.storage.objectstore import (
    UNKNOWN_SIZE,
    Download,
    ObjectMissing,
    ObjectStore,
    StoredObject,
    Upload,
    closed_on_error,
    fetching,
)

#: Parts per multipart upload at most: Swift's s3api allows 1 000 by default (AWS 10 000), so
#: a file that would need more is uploaded in larger parts instead.
MAX_PARTS = 1000
#: Transfers submitted but not yet awaited: bounds the memory (and the open files) of a
#: 20 000-file tree.
WINDOW = 256
PAGE = 1000
#: (object name, its transfer, the descriptor the transfer reads or None)
Transfer = tuple[str, TransferFuture, int | None]
MISSING_CODES = frozenset({"404", "NoSuchKey", "NoSuchBucket", "NotFound", "NoSuchUpload"})


class S3Bucket(ObjectStore):
    """The bucket named by S3_BUCKET_NAME; the boto3 client is built on first use (no I/O before)."""

    def __init__(
        self,
        settings: S3Settings,
        workers: int = COPY_WORKERS,
        connect_timeout: float = 5,
        read_timeout: float = 60,
        attempts: int = 3,
    ) -> None:
        self.settings = settings
        self.bucket = settings.bucket_name or ""
        self.label = f"S3 bucket {self.bucket!r} at {settings.endpoint_url}"
        self.workers = workers
        self._config = Config(
            region_name=settings.region_name,
            signature_version="s3v4",
            s3={"addressing_style": "path"},
            retries={"mode": "standard", "total_max_attempts": attempts},
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            max_pool_connections=4 * workers,  # kept alive across a few concurrent calls
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        self._client: Any = None
        self._lock = threading.Lock()

    @property
    def client(self) -> Any:
        """A boto3 client (thread-safe once built; building one is not, hence the lock)."""
        with self._lock:
            if self._client is None:
                self._client = boto3.session.Session().client(
                    "s3",
                    endpoint_url=self.settings.endpoint_url,
                    aws_access_key_id=self.settings.access_key,
                    aws_secret_access_key=self.settings.secret_key,
                    config=self._config,
                )
            return self._client

    @contextlib.contextmanager
    def calling(self, what: str) -> Iterator[None]:
        """botocore and s3transfer errors become domain errors naming ``what``."""
        try:
            yield
        except ClientError as error:
            code = str(error.response.get("Error", {}).get("Code", ""))
            status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status == 404 or code in MISSING_CODES:
                raise ObjectMissing(what) from None
            detail = f"HTTP {status}" + (f" {code}" if code and code != str(status) else "")
            raise StorageUnavailable(
                f"S3 at {self.settings.endpoint_url} failed to {what}: {detail}"
            ) from None
        except (BotoCoreError, RetriesExceededError) as error:
            raise StorageUnavailable(
                f"S3 at {self.settings.endpoint_url} does not answer ({what}): {type(error).__name__}"
            ) from None

    # -- reading --------------------------------------------------------------------------
    def ping(self) -> None:
        try:
            with self.calling(f"answer a HEAD of bucket {self.bucket!r}"):
                self.client.head_bucket(Bucket=self.bucket)
        except ObjectMissing:  # it answers; the bucket is made on the first upload
            pass

    def objects(self, prefix: str) -> Iterator[StoredObject]:
        request = {"Bucket": self.bucket, "Prefix": prefix, "MaxKeys": PAGE}
        while True:
            try:
                with self.calling(f"list {prefix!r}"):
                    page = self.client.list_objects_v2(**request)
            except ObjectMissing:  # no bucket yet: nothing in it
                return
            for item in page.get("Contents", ()):
                yield StoredObject(item["Key"], item["Size"], item.get("ETag", "").strip('"'))
            if not page.get("IsTruncated"):
                return
            request["ContinuationToken"] = page["NextContinuationToken"]

    def head(self, key: str) -> StoredObject | None:
        try:
            with self.calling(f"look up {key!r}"):
                answer = self.client.head_object(Bucket=self.bucket, Key=key)
        except ObjectMissing:
            return None
        return StoredObject(key, answer["ContentLength"], answer.get("ETag", "").strip('"'))

    def read_small(self, key: str, limit: int) -> bytes:
        with fetching(key), self.calling(f"download {key!r}"):
            answer = self.client.get_object(Bucket=self.bucket, Key=key, Range=f"bytes=0-{limit}")
            return answer["Body"].read(limit + 1)

    def download_all(self, downloads: Iterable[Download], exclusive: bool = False) -> None:
        """s3transfer writes a temporary file and renames it: with ``exclusive`` the destination
        is first created empty with ``O_EXCL``, so a taken one fails here and is never replaced.
        """
        with self._manager(self.settings.multipart_threshold) as manager:

            def submitted() -> Iterator[Transfer]:
                for obj, dest in downloads:
                    if exclusive:
                        dest.open("xb").close()
                    known = [KnownSize(obj.size)] if obj.size != UNKNOWN_SIZE else []
                    yield (
                        obj.name,
                        manager.download(self.bucket, obj.name, str(dest), subscribers=known),
                        None,
                    )

            self._await(submitted(), deque(), downloading=True, clashes=not exclusive)

    # -- writing --------------------------------------------------------------------------
    def ensure_container(self) -> None:
        try:
            with self.calling(f"look up bucket {self.bucket!r}"):
                self.client.head_bucket(Bucket=self.bucket)
            return
        except ObjectMissing:
            pass
        where = {}
        if self.settings.region_name != "us-east-1":  # the one region S3 refuses to be told
            where = {"CreateBucketConfiguration": {"LocationConstraint": self.settings.region_name}}
        try:
            with self.calling(f"create bucket {self.bucket!r}"):
                self.client.create_bucket(Bucket=self.bucket, **where)
        except StorageUnavailable as error:
            if "BucketAlreadyOwnedByYou" not in error.message:  # made meanwhile by another worker
                raise

    def part_size(self, size: int) -> int | None:
        """None below the threshold; else the threshold, doubled until the parts are few enough."""
        part = self.settings.multipart_threshold
        if size < part:
            return None
        while -(-size // part) > MAX_PARTS and part < S3_MAX_PART:
            part = min(2 * part, S3_MAX_PART)
        return part

    def upload_all(self, uploads: Iterable[Upload]) -> None:
        self._upload_in_parts_of(self.settings.multipart_threshold, uploads)

    def _upload_in_parts_of(self, usual: int, uploads: Iterable[Upload]) -> None:
        """Upload through one manager whose parts are ``usual`` bytes; a file that needs larger
        parts goes on its own through another.

        Each file is read through its descriptor's ``/proc/self/fd`` name (s3transfer opens it
        once per part) and closed once its upload is done — or, when something failed, once
        the manager has stopped every transfer, so no descriptor is closed while still read.
        """
        pending: deque[Transfer] = deque()
        try:
            with self._manager(usual) as manager:

                def submitted() -> Iterator[Transfer]:
                    for local, key in uploads:
                        with closed_on_error(local.fd):
                            part = self.part_size(local.size)
                            if part is not None:
                                self.abort_unfinished(key)
                            future = None
                            if part in (None, usual):
                                future = manager.upload(local.fd_path, self.bucket, key)
                        if future is None:
                            self._upload_in_parts_of(part, [(local, key)])  # type: ignore[arg-type]
                        else:
                            yield key, future, local.fd

                self._await(submitted(), pending, downloading=False)
        finally:
            for _name, _future, fd in pending:
                os.close(fd)  # type: ignore[arg-type]

    def abort_unfinished(self, key: str) -> None:
        """Abort multipart uploads of ``key`` that an earlier, interrupted upload left behind.

        An unfinished multipart upload is never visible as an object, but its parts take space.
        """
        with self.calling(f"list unfinished uploads of {key!r}"):
            answer = self.client.list_multipart_uploads(Bucket=self.bucket, Prefix=key)
        for upload in answer.get("Uploads", ()):
            if upload["Key"] != key:
                continue
            with contextlib.suppress(ObjectMissing), self.calling(f"abort an upload of {key!r}"):
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload["UploadId"])

    # -- transfers ------------------------------------------------------------------------
    def _manager(self, part_size: int) -> TransferManager:
        """An s3transfer manager: at most ``workers`` requests at a time, parts of ``part_size``.

        Used as a context manager: an error cancels what is still queued and aborts the
        multipart uploads in progress.
        """
        config = TransferConfig(
            multipart_threshold=self.settings.multipart_threshold,
            multipart_chunksize=part_size,
            max_concurrency=self.workers,
            num_download_attempts=3,
            max_io_queue=64,
            io_chunksize=256 * 1024,
            use_threads=True,
            preferred_transfer_client="classic",
        )
        return create_transfer_manager(self.client, config)

    def _await(
        self, transfers: Iterable[Transfer], pending: deque[Transfer], downloading: bool, clashes: bool = True
    ) -> None:
        """Wait for every transfer, at most :data:`WINDOW` behind the submissions.

        A transfer that succeeded leaves ``pending`` and its descriptor is closed; one that
        failed stays there (with those not awaited yet) for the caller to close.
        """

        def finish() -> None:
            name, future, fd = pending[0]
            guard = fetching(name, clashes) if downloading else contextlib.nullcontext()
            with guard, self.calling(f"{'download' if downloading else 'upload'} {name!r}"):
                future.result()
            pending.popleft()
            if fd is not None:
                os.close(fd)

        for transfer in transfers:
            pending.append(transfer)
            if len(pending) >= WINDOW:
                finish()
        while pending:
            finish()


class KnownSize(BaseSubscriber):
    """Tells s3transfer an object's size from the listing, which saves a HEAD per download."""

    def __init__(self, size: int) -> None:
        self.size = size

    def on_queued(self, future: TransferFuture, **kwargs: Any) -> None:
        future.meta.provide_transfer_size(self.size)
