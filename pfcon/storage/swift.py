"""In-network storage in OpenStack Swift (STORAGE_ENV=swift).

Staging, link resolution and the uploading output listing are those of every object store
(:mod:`pfcon.storage.objectstore`); this module only connects them to a Swift container.
"""

from __future__ import annotations

from typing import Any

from pfcon.settings import LinkLimits, SwiftSettings
from pfcon.storage.objectstore import ObjectStoreStorage
from pfcon.storage.swiftstore import SwiftContainer
from pfcon.storebase import StoreBase


class SwiftStorage(ObjectStoreStorage):
    name = "swift"

    def __init__(
        self, storebase: StoreBase, settings: SwiftSettings, link_limits: LinkLimits | None = None
    ) -> None:
        super().__init__(storebase, SwiftContainer(settings), link_limits)
        self.settings = settings

    def info(self) -> dict[str, Any]:
        return {"swift_auth_url": self.settings.auth_url}
