"""One typed, validated settings object built from the environment at start-up.

Reading the settings has no side effects (no network calls, nothing created); a bad value
raises :class:`SettingsError` naming the variable so the service stops with a clear message.
Variable names and meanings follow FNNDSC pfcon 5.3; our additions are marked in the README.
"""

from __future__ import annotations

import os
import random
import re
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from pfcon import __version__

DEV_USER = "pfcon"
DEV_PASSWORD = "pfcon1234"
DEV_SECRET_KEY = "pfcon-development-secret-key-not-for-production"
DEFAULT_STOREBASE_MOUNT = "/var/local/storeBase"
#: set in the gunicorn master once the job store is prepared, so its workers do not repeat it
#: (here, not in pfcon.store, so the master can set it without loading SQLAlchemy)
STORE_PREPARED_ENV = "PFCON_STORE_PREPARED"
MIN_SECRET_KEY_BYTES = 32  # RFC 7518 3.2: an HS256 key at least as long as the hash

MiB = 1024**2
GiB = 1024**3
_TRUE = {"1", "true", "yes", "on", "y", "t"}
_FALSE = {"0", "false", "no", "off", "n", "f", ""}
_LABEL_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-/]*$")
# Kubernetes name rules (RFC 1123 label and subdomain; label values)
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
# S3 bucket naming rules (the strict form every S3 server accepts) and region names
_BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_REGION_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")


class SettingsError(ValueError):
    """A configuration variable has a bad or missing value."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable


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


@dataclass(frozen=True)
class KubernetesSettings:
    """CONTAINER_ENV=kubernetes: where and how jobs run as batch/v1 Jobs.

    ``in_cluster`` is decided once from the environment Kubernetes gives every pod
    (KUBERNETES_SERVICE_HOST); otherwise the client reads ``kubeconfig``.
    """

    namespace: str = "default"
    node_selector: Mapping[str, str] = field(default_factory=dict)
    image_pull_secrets: tuple[str, ...] = ()
    ttl_seconds: int | None = 86400
    deadline_seconds: int | None = None
    in_cluster: bool = False
    service_host: str | None = None
    service_port: str | None = None
    kubeconfig: str | None = None


@dataclass(frozen=True)
class CromwellSettings:
    """CONTAINER_ENV=cromwell: where Cromwell answers, and each job's time limit."""

    url: str | None = None  # CROMWELL_URL without a trailing slash, e.g. http://cromwell:8000
    timelimit_minutes: int | None = None  # TIMELIMIT_MINUTES; None: the Cromwell config's default


SLURM_RUNTIMES = ("docker", "podman", "apptainer", "singularity")
#: the engines that start every job at once, so pfcon queues for them (the others queue themselves)
QUEUEING_ENGINES = ("docker", "podman")


@dataclass(frozen=True)
class AdmissionSettings:
    """PFCON_QUEUE and the capacity it hands out (docker and podman only).

    ``None`` capacities are read from the engine when first needed (reading settings never
    talks to it); memory and GPUs are never overcommitted, CPUs by ``cpu_overcommit``.
    """

    queue: bool = False
    cpus: float | None = None
    memory_mib: int | None = None
    gpus: int | None = None
    cpu_overcommit: float = 1.0
    fair_share: bool = False


@dataclass(frozen=True)
class SlurmSettings:
    """CONTAINER_ENV=slurm: how jobs are submitted to Slurm and run on its nodes."""

    timelimit_minutes: int | None = None
    partition: str | None = None
    sbatch_options: tuple[str, ...] = ()
    runtime: str = "docker"
    script_template: Path | None = None
    check_images: bool = True
    accounting: bool = False
    command_timeout_seconds: int = 20


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
    start_workers: int = 4
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


class _Env:
    """Typed readers over an environment mapping; every error names its variable."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ

    def str(self, name: str, default: str | None = None) -> str | None:
        value = self.environ.get(name)
        return default if value is None or value.strip() == "" else value.strip()

    def required(self, name: str) -> str:
        value = self.str(name)
        if value is None:
            raise SettingsError(name, "is required")
        return value

    def reader(self, mode: str, dev_defaults: Mapping[str, str]) -> Callable[[str], str]:
        """A reader of required variables that development mode defaults from ``dev_defaults``."""

        def read(name: str) -> str:
            if mode == "development":
                return self.str(name, dev_defaults[name])  # type: ignore[return-value]
            return self.required(name)

        return read

    def bool(self, name: str, default: bool) -> bool:
        value = self.environ.get(name)
        if value is None:
            return default
        lowered = value.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise SettingsError(name, f"expected a boolean (true/false, yes/no), got {value!r}")

    def int(self, name: str, default: int | None, minimum: int = 0) -> int | None:
        value = self.str(name)
        if value is None:
            return default
        try:
            number = int(value)
        except ValueError:
            raise SettingsError(name, f"expected an integer, got {value!r}") from None
        if number < minimum:
            raise SettingsError(name, f"must be at least {minimum}, got {number}")
        return number

    def float(self, name: str, default: float | None, minimum: float) -> float | None:
        value = self.str(name)
        if value is None:
            return default
        try:
            number = float(value)
        except ValueError:
            raise SettingsError(name, f"expected a number, got {value!r}") from None
        if not number >= minimum or number == float("inf"):
            raise SettingsError(name, f"must be a number of at least {minimum:g}, got {value!r}")
        return number

    def choice(self, name: str, choices: tuple[str, ...], default: str | None) -> str:
        value = self.str(name, default)
        if value is None:
            raise SettingsError(name, f"is required; one of {', '.join(choices)}")
        if value not in choices:
            raise SettingsError(name, f"must be one of {', '.join(choices)}, got {value!r}")
        return value


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


def _storebase_mount(env: _Env, volume_type: str, storebase: str | None) -> Path:
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


def _credentials(env: _Env, mode: str) -> tuple[str, str, str]:
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


INNETWORK_STORAGES = ("swift", "s3", "filesystem", "fslink")


def _storage_env(env: _Env, innetwork: bool) -> str:
    if innetwork:
        return env.choice("STORAGE_ENV", INNETWORK_STORAGES, None)
    value = env.choice("STORAGE_ENV", ("zipfile", *INNETWORK_STORAGES), "zipfile")
    if value != "zipfile":
        raise SettingsError(
            "STORAGE_ENV",
            f"{value!r} needs PFCON_INNETWORK=true; out-of-network storage is zipfile",
        )
    return value


def _volume(env: _Env, volume_type: str) -> tuple[str | None, str | None]:
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


def _zip_limits(env: _Env) -> ZipLimits:
    defaults = ZipLimits()
    return ZipLimits(
        max_upload_bytes=env.int("MAX_UPLOAD_BYTES", defaults.max_upload_bytes, 1),
        max_unzipped_bytes=env.int("MAX_UNZIPPED_BYTES", defaults.max_unzipped_bytes, 1),
        max_entries=env.int("MAX_ZIP_ENTRIES", defaults.max_entries, 1),
        max_ratio=env.int("MAX_ZIP_RATIO", defaults.max_ratio, 1),
    )


def _link_limits(env: _Env) -> LinkLimits:
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


def _swift(env: _Env, storage_env: str, mode: str) -> SwiftSettings:
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


def _s3(env: _Env, storage_env: str, mode: str) -> S3Settings:
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
        endpoint_url=_http_url(read("S3_ENDPOINT_URL"), "S3_ENDPOINT_URL"),
        access_key=read("S3_ACCESS_KEY"),
        secret_key=read("S3_SECRET_KEY"),
        region_name=region,
        bucket_name=bucket,
        multipart_threshold=threshold,
    )


def _kubernetes(
    env: _Env, container_env: str, volume_type: str, volume_name: str | None
) -> KubernetesSettings:
    """JOB_NAMESPACE, NODE_SELECTOR, IMAGE_PULL_SECRETS, JOB_TTL_SECONDS, JOB_DEADLINE_SECONDS;
    read only when CONTAINER_ENV=kubernetes.

    Names are checked here against Kubernetes' own rules so a typo stops the service at start
    instead of failing every job with a 422 from the API server.
    """
    if container_env != "kubernetes":
        return KubernetesSettings()
    if volume_type != "kubernetes_pvc":
        raise SettingsError(
            "COMPUTE_VOLUME_TYPE", f"must be kubernetes_pvc for CONTAINER_ENV=kubernetes, got {volume_type!r}"
        )
    if not volume_name or not _DNS_SUBDOMAIN.fullmatch(volume_name):
        raise SettingsError("VOLUME_NAME", f"must name the storeBase PVC, got {volume_name!r}")
    namespace = env.str("JOB_NAMESPACE", "default")
    if not _DNS_LABEL.fullmatch(namespace):
        raise SettingsError("JOB_NAMESPACE", f"not a Kubernetes namespace name: {namespace!r}")
    ttl = env.int("JOB_TTL_SECONDS", 86400, 0)
    deadline = env.int("JOB_DEADLINE_SECONDS", 0, 0)
    service_host = env.str("KUBERNETES_SERVICE_HOST")
    return KubernetesSettings(
        namespace=namespace,
        node_selector=parse_node_selector(env.str("NODE_SELECTOR")),
        image_pull_secrets=parse_names(env.str("IMAGE_PULL_SECRETS"), "IMAGE_PULL_SECRETS"),
        ttl_seconds=ttl or None,
        deadline_seconds=deadline or None,
        in_cluster=service_host is not None,
        service_host=service_host,
        service_port=env.str("KUBERNETES_SERVICE_PORT"),
        kubeconfig=env.str("KUBECONFIG", os.path.expanduser("~/.kube/config")),
    )


def is_label_key(key: str) -> bool:
    """A Kubernetes label key: an optional DNS-subdomain prefix and a name of up to 63 characters."""
    prefix, _, name = key.rpartition("/")
    if prefix and not _DNS_SUBDOMAIN.fullmatch(prefix):
        return False
    return len(name) <= 63 and bool(_LABEL_VALUE.fullmatch(name)) and name != ""


def is_label_value(value: str) -> bool:
    return len(value) <= 63 and bool(_LABEL_VALUE.fullmatch(value))


def parse_node_selector(text: str | None) -> dict[str, str]:
    """NODE_SELECTOR: ``k=v,k2=v2`` (as pfcon 5.3 read it), each a valid Kubernetes label."""
    selector: dict[str, str] = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        key, sep, value = (part.strip() for part in item.partition("="))
        if not sep or not is_label_key(key) or not is_label_value(value):
            raise SettingsError(
                "NODE_SELECTOR", f"expected comma-separated key=value node labels, got {item.strip()!r}"
            )
        selector[key] = value
    return selector


def parse_names(text: str | None, variable: str) -> tuple[str, ...]:
    """A comma-separated list of Kubernetes object names (IMAGE_PULL_SECRETS)."""
    names = tuple(name.strip() for name in (text or "").split(",") if name.strip())
    for name in names:
        if not _DNS_SUBDOMAIN.fullmatch(name):
            raise SettingsError(variable, f"not a Kubernetes object name: {name!r}")
    return names


def _cromwell(env: _Env, container_env: str) -> CromwellSettings:
    """CROMWELL_URL, TIMELIMIT_MINUTES; read only when CONTAINER_ENV=cromwell.

    The URL is checked for shape only: reading settings never talks to the network, so an
    unreachable Cromwell shows up in ``pfcon check`` and the health check, not here.
    """
    if container_env != "cromwell":
        return CromwellSettings()
    return CromwellSettings(
        url=_http_url(env.required("CROMWELL_URL"), "CROMWELL_URL"),
        timelimit_minutes=env.int("TIMELIMIT_MINUTES", None, 1),
    )


def _http_url(text: str, variable: str) -> str:
    """An absolute http(s) URL with a host, without its trailing slash."""
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SettingsError(variable, f"expected an http:// or https:// URL, got {text!r}")
    if parts.query or parts.fragment:
        raise SettingsError(variable, f"must not have a query or fragment, got {text!r}")
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise SettingsError(variable, f"has a bad port, got {text!r}") from None
    return text.rstrip("/")


def _slurm(env: _Env, container_env: str) -> SlurmSettings:
    """TIMELIMIT_MINUTES and the Slurm backend's own variables; read only when CONTAINER_ENV=slurm."""
    if container_env != "slurm":
        return SlurmSettings()
    template = env.str("SLURM_SCRIPT_TEMPLATE")
    if template is not None and not Path(template).is_file():
        raise SettingsError("SLURM_SCRIPT_TEMPLATE", f"{template} is not a file")
    return SlurmSettings(
        timelimit_minutes=env.int("TIMELIMIT_MINUTES", None, 1),
        partition=env.str("SLURM_PARTITION"),
        sbatch_options=_sbatch_options(env.str("SLURM_SBATCH_OPTIONS")),
        runtime=env.choice("SLURM_RUNTIME", SLURM_RUNTIMES, "docker"),
        script_template=Path(template) if template else None,
        check_images=env.bool("SLURM_CHECK_IMAGES", True),
        accounting=env.bool("SLURM_ACCOUNTING", False),
        command_timeout_seconds=env.int("SLURM_COMMAND_TIMEOUT", 20, 1),
    )


def _sbatch_options(text: str | None) -> tuple[str, ...]:
    """SLURM_SBATCH_OPTIONS, split like a shell would: one ``#SBATCH`` line per option.

    ``--qos=long -A chris --comment='a b'`` gives ``--qos=long``, ``-A chris`` and
    ``'--comment=a b'`` (sbatch reads quotes in its ``#SBATCH`` lines).
    """
    try:
        words = shlex.split(text or "")
    except ValueError as error:
        raise SettingsError("SLURM_SBATCH_OPTIONS", f"cannot split {text!r}: {error}") from None
    groups: list[list[str]] = []
    for word in words:
        if "\n" in word:
            raise SettingsError("SLURM_SBATCH_OPTIONS", f"no line breaks in options, got {word!r}")
        if word.startswith("-"):
            groups.append([word])
        elif groups:
            groups[-1].append(word)  # the value of the option before it
        else:
            raise SettingsError("SLURM_SBATCH_OPTIONS", f"expected an sbatch option first, got {word!r}")
    return tuple(shlex.join(group) for group in groups)


def _admission(env: _Env, container_env: str, ignore_limits: bool) -> AdmissionSettings:
    """PFCON_QUEUE (default on for docker and podman), the capacity and its sharing.

    The queue admits jobs by their limits, so with IGNORE_LIMITS it is off by default and
    cannot be turned on; engines that queue themselves refuse PFCON_QUEUE=on.
    """
    queueing = container_env in QUEUEING_ENGINES
    queue = env.bool("PFCON_QUEUE", queueing and not ignore_limits)
    if queue and not queueing:
        raise SettingsError(
            "PFCON_QUEUE", f"{container_env} queues jobs itself; pfcon queues for docker and podman"
        )
    if queue and ignore_limits:
        raise SettingsError(
            "PFCON_QUEUE", "needs the jobs' limits to admit them by; IGNORE_LIMITS=true drops them"
        )
    if not queue:
        return AdmissionSettings()
    return AdmissionSettings(
        queue=True,
        cpus=env.float("PFCON_CAPACITY_CPUS", None, 0.001),
        memory_mib=env.int("PFCON_CAPACITY_MEMORY_MIB", None, 1),
        gpus=env.int("PFCON_CAPACITY_GPUS", None, 0),
        cpu_overcommit=env.float("PFCON_CPU_OVERCOMMIT", 1.0, 1.0) or 1.0,
        fair_share=env.bool("PFCON_FAIR_SHARE", False),
    )


STATE_DIR = ".pfcon"  # pfcon's own state in storeBase (the SQLite job store)


def _database_url(env: _Env, storebase_mount: Path) -> str:
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


def _observability(env: _Env) -> ObservabilitySettings:
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
    env = _Env(os.environ if environ is None else environ)
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
    env = _Env(os.environ if environ is None else environ)
    mode = env.choice("APPLICATION_MODE", ("production", "development"), "production")
    secret_key, user, password = _credentials(env, mode)
    innetwork = env.bool("PFCON_INNETWORK", False)
    volume_type = env.choice("COMPUTE_VOLUME_TYPE", ("host", "docker_local_volume", "kubernetes_pvc"), "host")
    storebase, volume_name = _volume(env, volume_type)
    storebase_mount = _storebase_mount(env, volume_type, storebase)
    shm = env.int("SHM_SIZE", None, 1)
    storage_env = _storage_env(env, innetwork)
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
        zip_limits=_zip_limits(env),
        link_limits=_link_limits(env),
        start_workers=env.int("PFCON_START_WORKERS", 4, 1),
        start_retry_seconds=env.int("PFCON_START_RETRY_SECONDS", 600, 0),
        database_url=_database_url(env, storebase_mount),
        history_days=env.int("PFCON_HISTORY_DAYS", 30, 1),
        op_workers=env.int("PFCON_OP_WORKERS", 4, 1),
        admission=_admission(env, container_env, ignore_limits),
        swift=_swift(env, storage_env, mode),
        s3=_s3(env, storage_env, mode),
        kubernetes=_kubernetes(env, container_env, volume_type, volume_name),
        cromwell=_cromwell(env, container_env),
        slurm=_slurm(env, container_env),
        observability=_observability(env),
    )
