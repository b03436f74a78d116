"""The one :class:`Settings` object and what every deployment sets.

Mode, credentials, storeBase, jobs, the job store, serving and observability live here;
:func:`load_settings` reads them and asks each family's module for its own part.
"""

from __future__ import annotations

import os
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pfcon import __version__
from pfcon.settings.admission import AdmissionSettings, read_admission
from pfcon.settings.batch import SlurmSettings, read_slurm
from pfcon.settings.cromwell import CromwellSettings, read_cromwell
from pfcon.settings.env import Env, SettingsError
from pfcon.settings.kubernetes import KubernetesSettings, read_kubernetes
from pfcon.settings.storage import (
    LinkLimits,
    S3Settings,
    SwiftSettings,
    ZipLimits,
    read_link_limits,
    read_s3,
    read_storage_env,
    read_swift,
    read_zip_limits,
)

DEV_USER = "pfcon"
DEV_PASSWORD = "pfcon1234"
DEV_SECRET_KEY = "pfcon-development-secret-key-not-for-production"
DEFAULT_STOREBASE_MOUNT = "/var/local/storeBase"
#: set in the gunicorn master once the job store is prepared, so its workers do not repeat it
#: (here, not in pfcon.store, so the master can set it without loading SQLAlchemy)
STORE_PREPARED_ENV = "PFCON_STORE_PREPARED"
MIN_SECRET_KEY_BYTES = 32  # RFC 7518 3.2: an HS256 key at least as long as the hash


_LABEL_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-/]*$")


@dataclass(frozen=True)
class IdRange:
    """An inclusive range of numeric ids; a single id is a range of one."""

    low: int
    high: int

    def pick(self) -> int:
        return self.low if self.low == self.high else random.randint(self.low, self.high)


@dataclass(frozen=True)
class ContainerUser:
    """CONTAINER_USER: ``UID:GID`` where each side may be a range ``lo-hi`` picked per job."""

    uid: IdRange
    gid: IdRange

    def pick(self) -> str:
        return f"{self.uid.pick()}:{self.gid.pick()}"


METRICS_MODES = ("token", "open", "off")


@dataclass(frozen=True)
class ObservabilitySettings:
    """PFCON_METRICS and the dashboard's session (see docs/observability.md).

    ``metrics`` is ``token`` (``/metrics`` asks for the API token or the pfcon user's password),
    ``open`` (no credentials), ``off``, or ``bind``: served without credentials on its own
    address ``metrics_bind`` by the gunicorn master, and not on the API's port.
    """

    metrics: str = "token"
    metrics_bind: str | None = None
    session_seconds: int = 8 * 3600
    secure_cookie: bool = False


@dataclass(frozen=True)
class Settings:
    """Everything pfcon is configured with, validated once."""

    application_mode: str = "development"
    secret_key: str = DEV_SECRET_KEY
    pfcon_user: str = DEV_USER
    pfcon_password: str = DEV_PASSWORD
    token_lifetime_seconds: int = 2 * 24 * 3600
    server_version: str = __version__
    pfcon_innetwork: bool = False
    storage_env: str = "zipfile"
    container_env: str = "docker"
    compute_volume_type: str = "host"
    storebase: str | None = None
    storebase_mount: Path = Path(DEFAULT_STOREBASE_MOUNT)
    volume_name: str | None = None
    pfcon_selector: str = "org.chrisproject.role=pfcon"
    container_user: ContainerUser | None = None
    enable_home_workaround: bool = False
    shm_size_mib: int | None = None
    job_labels: Mapping[str, str] = field(default_factory=dict)
    job_logs_tail: int = 1000
    ignore_limits: bool = False
    remove_jobs: bool = True
    zip_limits: ZipLimits = field(default_factory=ZipLimits)
    link_limits: LinkLimits = field(default_factory=LinkLimits)
    #: per worker process; one process's scheduler pass may claim every waiting job, so its
    #: own pool must keep the engine busy (4 left a 2-core machine idle, docs/performance.md)
    start_workers: int = 8
    start_retry_seconds: int = 600
    database_url: str = ""
    history_days: int = 30
    op_workers: int = 4
    admission: AdmissionSettings = field(default_factory=AdmissionSettings)
    swift: SwiftSettings = field(default_factory=SwiftSettings)
    s3: S3Settings = field(default_factory=S3Settings)
    kubernetes: KubernetesSettings = field(default_factory=KubernetesSettings)
    cromwell: CromwellSettings = field(default_factory=CromwellSettings)
    slurm: SlurmSettings = field(default_factory=SlurmSettings)
    observability: ObservabilitySettings = field(default_factory=ObservabilitySettings)

    @property
    def development(self) -> bool:
        return self.application_mode == "development"


@dataclass(frozen=True)
class ServingSettings:
    """How gunicorn serves pfcon (read by ``pfcon.gunicorn_config``)."""

    bind: str = "0.0.0.0:5005"
    workers: int = 2
    threads: int = 16
    log_level: str = "info"
    client_timeout: int = 30  # a read may wait this long; a body must bring 1 KiB/s per period
    header_timeout: int = 20  # request line and headers complete within this
    upload_slots: int | None = None  # requests per worker reading a body at once; None: threads // 2

    @property
    def body_slots(self) -> int:
        return self.upload_slots or max(1, self.threads // 2)

    @property
    def body_waiters(self) -> int:
        """Requests per worker that may wait for a body slot (holding a thread meanwhile)."""
        return self.threads // 4


def parse_id_range(text: str, variable: str) -> IdRange:
    """Parse ``N`` or ``LO-HI`` into an :class:`IdRange`."""
    match = re.fullmatch(r"(\d+)(?:-(\d+))?", text.strip())
    if not match:
        raise SettingsError(variable, f"expected UID:GID with each a number or range lo-hi, got {text!r}")
    low = int(match.group(1))
    high = int(match.group(2)) if match.group(2) else low
    if high < low:
        raise SettingsError(variable, f"range {text!r} is empty (high < low)")
    return IdRange(low, high)


def parse_container_user(text: str | None) -> ContainerUser | None:
    if text is None:
        return None
    uid, sep, gid = text.partition(":")
    if not sep:
        raise SettingsError("CONTAINER_USER", f"expected UID:GID, got {text!r}")
    return ContainerUser(parse_id_range(uid, "CONTAINER_USER"), parse_id_range(gid, "CONTAINER_USER"))


def parse_labels(text: str | None) -> dict[str, str]:
    """JOB_LABELS: ``k=v,k2=v2``."""
    labels: dict[str, str] = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not _LABEL_KEY.match(key):
            raise SettingsError("JOB_LABELS", f"expected comma-separated key=value pairs, got {item!r}")
        labels[key] = value.strip()
    return labels


def _storebase_mount(env: Env, volume_type: str, storebase: str | None) -> Path:
    """pfcon's own view of storeBase.

    pfcon 5.3 defaults STOREBASE_MOUNT to /var/local/storeBase, which is right inside its
    image. Run straight on a host, that folder usually does not exist, so with host volumes we
    fall back to STOREBASE itself (where pfcon and the engine see the same path).
    """
    explicit = env.str("STOREBASE_MOUNT")
    if explicit:
        return Path(explicit)
    if volume_type == "host" and storebase and not Path(DEFAULT_STOREBASE_MOUNT).is_dir():
        return Path(storebase)
    return Path(DEFAULT_STOREBASE_MOUNT)


def _credentials(env: Env, mode: str) -> tuple[str, str, str]:
    if mode == "development":
        return (
            env.str("SECRET_KEY", DEV_SECRET_KEY),
            env.str("PFCON_USER", DEV_USER),
            env.str("PFCON_PASSWORD", DEV_PASSWORD),
        )
    secret_key = env.required("SECRET_KEY")
    if len(secret_key.encode()) < MIN_SECRET_KEY_BYTES:
        raise SettingsError(
            "SECRET_KEY",
            f"must be at least {MIN_SECRET_KEY_BYTES} bytes in production (HS256 tokens signed with a "
            f"shorter key can be brute-forced); got {len(secret_key.encode())}. "
            "Generate one with: python3 -c 'import secrets; print(secrets.token_urlsafe(48))'",
        )
    return secret_key, env.required("PFCON_USER"), env.required("PFCON_PASSWORD")


def _volume(env: Env, volume_type: str) -> tuple[str | None, str | None]:
    storebase = env.str("STOREBASE")
    volume_name = env.str("VOLUME_NAME")
    if volume_type == "host":
        if not storebase:
            raise SettingsError("STOREBASE", "is required when COMPUTE_VOLUME_TYPE=host")
        if not os.path.isabs(storebase):
            raise SettingsError("STOREBASE", f"must be an absolute path, got {storebase!r}")
        if volume_name:
            raise SettingsError("VOLUME_NAME", "conflicts with COMPUTE_VOLUME_TYPE=host (use STOREBASE)")
    elif storebase:
        raise SettingsError(
            "STOREBASE", f"conflicts with COMPUTE_VOLUME_TYPE={volume_type} (use VOLUME_NAME)"
        )
    return storebase, volume_name


STATE_DIR = ".pfcon"  # pfcon's own state in storeBase (the SQLite job store)


def _database_url(env: Env, storebase_mount: Path) -> str:
    """PFCON_DATABASE_URL, checked for form only; default an SQLite file in storeBase.

    ``postgresql://`` means PostgreSQL through psycopg 3 (the driver pfcon ships).
    """
    text = env.str("PFCON_DATABASE_URL")
    if text is None:
        return f"sqlite:///{storebase_mount / STATE_DIR / 'pfcon.db'}"
    scheme, sep, rest = text.partition("://")
    if not sep:
        raise SettingsError(
            "PFCON_DATABASE_URL", "expected sqlite:///PATH or postgresql+psycopg://USER:PASSWORD@HOST/DB"
        )
    if scheme in ("postgresql", "postgres"):
        scheme = "postgresql+psycopg"
    if scheme not in ("sqlite", "postgresql+psycopg"):
        raise SettingsError(
            "PFCON_DATABASE_URL", f"unsupported database {scheme!r}: use sqlite or postgresql+psycopg"
        )
    if scheme == "sqlite" and not rest.startswith("//"):  # sqlite:////abs/path
        raise SettingsError("PFCON_DATABASE_URL", "an SQLite URL needs a path: sqlite:////abs/path/pfcon.db")
    if scheme != "sqlite" and not rest.split("@")[-1].split("/")[0]:
        raise SettingsError("PFCON_DATABASE_URL", "a PostgreSQL URL needs a host")
    return f"{scheme}://{rest}"


def _check_bind(bind: str) -> str:
    """``HOST:PORT``, ``[IPv6]:PORT`` or ``unix:PATH`` (gunicorn's forms), checked up front."""
    if bind.startswith("unix:") and len(bind) > 5:
        return bind
    if not _is_host_port(bind):
        raise SettingsError("PFCON_BIND", f"expected HOST:PORT or unix:PATH, got {bind!r}")
    return bind


def _is_host_port(text: str) -> bool:
    host, sep, port = text.rpartition(":")
    return bool(sep and host and port.isdigit() and 0 <= int(port) < 65536)


def _observability(env: Env) -> ObservabilitySettings:
    metrics = env.str("PFCON_METRICS", "token")
    bind = None
    if metrics not in METRICS_MODES:
        if not _is_host_port(metrics):
            raise SettingsError("PFCON_METRICS", f"expected token, open, off or HOST:PORT, got {metrics!r}")
        bind, metrics = metrics, "bind"
    return ObservabilitySettings(
        metrics=metrics,
        metrics_bind=bind,
        session_seconds=env.int("PFCON_DASHBOARD_SESSION_SECONDS", 8 * 3600, 1),
        secure_cookie=env.bool("PFCON_SESSION_COOKIE_SECURE", False),
    )


def load_serving_settings(environ: Mapping[str, str] | None = None) -> ServingSettings:
    env = Env(os.environ if environ is None else environ)
    return ServingSettings(
        bind=_check_bind(env.str("PFCON_BIND", "0.0.0.0:5005")),
        workers=env.int("PFCON_WORKERS", 2, 1),
        threads=env.int("PFCON_THREADS", 16, 1),
        log_level=env.choice("PFCON_LOG_LEVEL", ("debug", "info", "warning", "error", "critical"), "info"),
        client_timeout=env.int("PFCON_CLIENT_TIMEOUT", 30, 1),
        header_timeout=env.int("PFCON_HEADER_TIMEOUT", 20, 1),
        upload_slots=env.int("PFCON_UPLOAD_SLOTS", None, 1),
    )


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Build and validate :class:`Settings` from ``environ`` (default: ``os.environ``)."""
    env = Env(os.environ if environ is None else environ)
    mode = env.choice("APPLICATION_MODE", ("production", "development"), "production")
    secret_key, user, password = _credentials(env, mode)
    innetwork = env.bool("PFCON_INNETWORK", False)
    volume_type = env.choice("COMPUTE_VOLUME_TYPE", ("host", "docker_local_volume", "kubernetes_pvc"), "host")
    storebase, volume_name = _volume(env, volume_type)
    storebase_mount = _storebase_mount(env, volume_type, storebase)
    shm = env.int("SHM_SIZE", None, 1)
    storage_env = read_storage_env(env, innetwork)
    container_env = env.choice(
        "CONTAINER_ENV", ("docker", "podman", "swarm", "kubernetes", "cromwell", "slurm"), "docker"
    )
    ignore_limits = env.bool("IGNORE_LIMITS", False)
    return Settings(
        application_mode=mode,
        secret_key=secret_key,
        pfcon_user=user,
        pfcon_password=password,
        token_lifetime_seconds=env.int("AUTH_TOKEN_LIFETIME", 2 * 24 * 3600, 1),
        pfcon_innetwork=innetwork,
        storage_env=storage_env,
        container_env=container_env,
        compute_volume_type=volume_type,
        storebase=storebase,
        storebase_mount=storebase_mount,
        volume_name=volume_name,
        pfcon_selector=env.str("PFCON_SELECTOR", "org.chrisproject.role=pfcon"),
        container_user=parse_container_user(env.str("CONTAINER_USER")),
        enable_home_workaround=env.bool("ENABLE_HOME_WORKAROUND", False),
        shm_size_mib=shm,
        job_labels=parse_labels(env.str("JOB_LABELS")),
        job_logs_tail=env.int("JOB_LOGS_TAIL", 1000, 0),
        ignore_limits=ignore_limits,
        remove_jobs=env.bool("REMOVE_JOBS", True),
        zip_limits=read_zip_limits(env),
        link_limits=read_link_limits(env),
        start_workers=env.int("PFCON_START_WORKERS", 8, 1),
        start_retry_seconds=env.int("PFCON_START_RETRY_SECONDS", 600, 0),
        database_url=_database_url(env, storebase_mount),
        history_days=env.int("PFCON_HISTORY_DAYS", 30, 1),
        op_workers=env.int("PFCON_OP_WORKERS", 4, 1),
        admission=read_admission(env, container_env, ignore_limits),
        swift=read_swift(env, storage_env, mode),
        s3=read_s3(env, storage_env, mode),
        kubernetes=read_kubernetes(env, container_env, volume_type, volume_name),
        cromwell=read_cromwell(env, container_env),
        slurm=read_slurm(env, container_env),
        observability=_observability(env),
    )
