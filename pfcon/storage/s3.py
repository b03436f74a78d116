"""In-network storage in an S3 bucket (STORAGE_ENV=s3, as pfcon 6).

Staging, link resolution and the uploading output listing are those of every object store
(:mod:`pfcon.storage.objectstore`), exactly as for Swift; this module only connects them to
a bucket through boto3 (:mod:`pfcon.storage.s3store`).
"""

from __future__ import annotations

from typing import Any

from pfcon.settings import LinkLimits, S3Settings
from pfcon.storage.objectstore import ObjectStoreStorage
from pfcon.storage.s3store import S3Bucket
from pfcon.storebase import StoreBase


class S3Storage(ObjectStoreStorage):
    name = "s3"

    def __init__(
        self, storebase: StoreBase, settings: S3Settings, link_limits: LinkLimits | None = None
    ) -> None:
        super().__init__(storebase, S3Bucket(settings), link_limits)
        self.settings = settings

    def info(self) -> dict[str, Any]:
        return {"s3_endpoint_url": self.settings.endpoint_url}
