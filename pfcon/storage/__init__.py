"""Storage strategies, chosen once at start-up from STORAGE_ENV through :data:`REGISTRY`."""

from __future__ import annotations

from collections.abc import Callable

from pfcon.settings import Settings, SettingsError
from pfcon.storage.base import Storage
from pfcon.storebase import StoreBase


def _zipfile(settings: Settings, storebase: StoreBase) -> Storage:
    from pfcon.storage.zipfile import ZipFileStorage

    return ZipFileStorage(storebase, settings.zip_limits)


REGISTRY: dict[str, Callable[[Settings, StoreBase], Storage]] = {
    "zipfile": _zipfile,
}


def build_storage(settings: Settings, storebase: StoreBase) -> Storage:
    factory = REGISTRY.get(settings.storage_env)
    if factory is None:
        raise SettingsError(
            "STORAGE_ENV",
            f"{settings.storage_env!r} is not available in this version; available: {', '.join(REGISTRY)}",
        )
    return factory(settings, storebase)
