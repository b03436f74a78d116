"""STORAGE_ENV and what each storage reads: zip and link limits, Swift, S3."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from pfcon.settings.env import Env, GiB, MiB, SettingsError, http_url

# S3 bucket naming rules (the strict form every S3 server accepts) and region names
_BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_REGION_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")


@dataclass(frozen=True)
class ZipLimits:
    """Caps on an uploaded zip; defaults accept real imaging data and refuse bombs."""

    max_upload_bytes: int = 64 * GiB
    max_unzipped_bytes: int = 256 * GiB
    max_entries: int = 200_000
    max_ratio: int = 200


@dataclass(frozen=True)
class LinkLimits:
    """Caps on what the ``.chrislink`` files of one job may copy (every storage).

    Links to folders that hold links multiply (each level can double the copy), so the copies
    are counted while the links are resolved, before anything is copied.
    """

    max_links: int = 10_000
    max_entries: int = 200_000  # files and folders the copies make
    max_bytes: int = 256 * GiB


@dataclass(frozen=True)
class SwiftSettings:
    """In-network Swift storage (STORAGE_ENV=swift): where to log in (tempauth v1) and which container.

    Only checked for form here; whether Swift answers is asked by the health check and on use.
    """

    auth_url: str | None = None
    username: str | None = None
    key: str | None = None
    container_name: str | None = None


S3_MIN_PART = 5 * MiB  # S3's smallest part (every part but the last)
S3_MAX_PART = 5 * GiB  # and its largest, which is also its largest single PUT


@dataclass(frozen=True)
class S3Settings:
    """In-network S3 storage (STORAGE_ENV=s3): the endpoint, the credentials, the bucket.

    ``multipart_threshold`` (S3_MULTIPART_THRESHOLD, bytes) is both the size from which a file
    is uploaded in parts and the size of those parts. Only checked for form here; whether the
    endpoint answers is asked by the health check and on use.
    """

    endpoint_url: str | None = None
    access_key: str | None = None
    secret_key: str | None = None
    region_name: str = "us-east-1"
    bucket_name: str | None = None
    multipart_threshold: int = 64 * MiB


INNETWORK_STORAGES = ("swift", "s3", "filesystem", "fslink")


def read_storage_env(env: Env, innetwork: bool) -> str:
    if innetwork:
        return env.choice("STORAGE_ENV", INNETWORK_STORAGES, None)
    value = env.choice("STORAGE_ENV", ("zipfile", *INNETWORK_STORAGES), "zipfile")
    if value != "zipfile":
        raise SettingsError(
            "STORAGE_ENV",
            f"{value!r} needs PFCON_INNETWORK=true; out-of-network storage is zipfile",
        )
    return value


def read_zip_limits(env: Env) -> ZipLimits:
    defaults = ZipLimits()
    return ZipLimits(
        max_upload_bytes=env.int("MAX_UPLOAD_BYTES", defaults.max_upload_bytes, 1),
        max_unzipped_bytes=env.int("MAX_UNZIPPED_BYTES", defaults.max_unzipped_bytes, 1),
        max_entries=env.int("MAX_ZIP_ENTRIES", defaults.max_entries, 1),
        max_ratio=env.int("MAX_ZIP_RATIO", defaults.max_ratio, 1),
    )


def read_link_limits(env: Env) -> LinkLimits:
    defaults = LinkLimits()
    return LinkLimits(
        max_links=env.int("MAX_JOB_LINKS", defaults.max_links, 0),
        max_entries=env.int("MAX_LINKED_ENTRIES", defaults.max_entries, 0),
        max_bytes=env.int("MAX_LINKED_BYTES", defaults.max_bytes, 0),
    )


SWIFT_DEV_DEFAULTS = {
    "SWIFT_AUTH_URL": "http://127.0.0.1:8080/auth/v1.0",  # scripts/setup.d/40-swift.sh
    "SWIFT_USERNAME": "chris:chris1234",
    "SWIFT_KEY": "testing",
    "SWIFT_CONTAINER_NAME": "users",
}


def read_swift(env: Env, storage_env: str, mode: str) -> SwiftSettings:
    """SWIFT_*; read only when STORAGE_ENV=swift. Development mode has pfcon 5.3's dev defaults."""
    if storage_env != "swift":
        return SwiftSettings()

    read = env.reader(mode, SWIFT_DEV_DEFAULTS)
    auth_url = read("SWIFT_AUTH_URL")
    parsed = urlsplit(auth_url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise SettingsError(
            "SWIFT_AUTH_URL", f"expected the http(s) URL of the auth endpoint, got {auth_url!r}"
        )
    try:
        parsed.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise SettingsError("SWIFT_AUTH_URL", f"bad port in {auth_url!r}") from None
    username = read("SWIFT_USERNAME")
    if ":" not in username:
        raise SettingsError("SWIFT_USERNAME", f"expected ACCOUNT:USER (tempauth), got {username!r}")
    container = read("SWIFT_CONTAINER_NAME")
    if "/" in container or len(container) > 256:
        raise SettingsError("SWIFT_CONTAINER_NAME", f"must be a name without '/', got {container!r}")
    key = read("SWIFT_KEY")
    return SwiftSettings(auth_url=auth_url, username=username, key=key, container_name=container)


S3_DEV_DEFAULTS = {  # the S3 API of the Swift server of scripts/setup.d/40-swift.sh
    "S3_ENDPOINT_URL": "http://127.0.0.1:8080",
    "S3_ACCESS_KEY": "chris:chris1234",
    "S3_SECRET_KEY": "testing",
    "S3_BUCKET_NAME": "users",
}


def read_s3(env: Env, storage_env: str, mode: str) -> S3Settings:
    """S3_*; read only when STORAGE_ENV=s3. Development mode defaults to the loopback Swift's S3 API."""
    if storage_env != "s3":
        return S3Settings()

    read = env.reader(mode, S3_DEV_DEFAULTS)
    bucket = read("S3_BUCKET_NAME")
    if not _BUCKET_NAME.fullmatch(bucket) or ".." in bucket:
        raise SettingsError(
            "S3_BUCKET_NAME", f"expected 3-63 lowercase letters, digits, '.' or '-', got {bucket!r}"
        )
    region = env.str("S3_REGION_NAME", "us-east-1")
    if not _REGION_NAME.fullmatch(region):
        raise SettingsError("S3_REGION_NAME", f"expected a region name such as us-east-1, got {region!r}")
    threshold = env.int("S3_MULTIPART_THRESHOLD", S3Settings.multipart_threshold, S3_MIN_PART)
    if threshold > S3_MAX_PART:
        raise SettingsError(
            "S3_MULTIPART_THRESHOLD", f"must be at most 5 GiB ({S3_MAX_PART}), got {threshold}"
        )
    return S3Settings(
        endpoint_url=http_url(read("S3_ENDPOINT_URL"), "S3_ENDPOINT_URL"),
        access_key=read("S3_ACCESS_KEY"),
        secret_key=read("S3_SECRET_KEY"),
        region_name=region,
        bucket_name=bucket,
        multipart_threshold=threshold,
    )
