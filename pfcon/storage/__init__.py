"""Storage strategies, chosen once at start-up from STORAGE_ENV through :data:`REGISTRY`."""

from __future__ import annotations

from collections.abc import Callable

from pfcon.settings import Settings, SettingsError
from pfcon.storage.base import Storage
from pfcon.storebase import StoreBase


def _zipfile(settings: Settings, storebase: StoreBase) -> Storage:
    from pfcon.storage.zipfile import ZipFileStorage

    return ZipFileStorage(storebase, settings.zip_limits, settings.link_limits)


def _filesystem(settings: Settings, storebase: StoreBase) -> Storage:
    from pfcon.storage.filesystem import FilesystemStorage

    return FilesystemStorage(storebase, settings.link_limits)


def _fslink(settings: Settings, storebase: StoreBase) -> Storage:
    from pfcon.storage.fslink import FslinkStorage

    return FslinkStorage(storebase, settings.link_limits)


def _swift(settings: Settings, storebase: StoreBase) -> Storage:
    from pfcon.storage.swift import SwiftStorage

    return SwiftStorage(storebase, settings.swift, settings.link_limits)


def _s3(settings: Settings, storebase: StoreBase) -> Storage:
    from pfcon.storage.s3 import S3Storage

    return S3Storage(storebase, settings.s3, settings.link_limits)


REGISTRY: dict[str, Callable[[Settings, StoreBase], Storage]] = {
    "zipfile": _zipfile,
    "filesystem": _filesystem,
    "fslink": _fslink,
    "swift": _swift,
    "s3": _s3,
}


def build_storage(settings: Settings, storebase: StoreBase) -> Storage:
    factory = REGISTRY.get(settings.storage_env)
    if factory is None:
        raise SettingsError(
            "STORAGE_ENV",
            f"{settings.storage_env!r} is not available in this version; available: {', '.join(REGISTRY)}",
        )
    return factory(settings, storebase)
