"""One typed, validated settings object built from the environment at start-up.

Reading the settings has no side effects (no network calls, nothing created); a bad value
raises :class:`SettingsError` naming the variable so the service stops with a clear message.
Variable names and meanings follow FNNDSC pfcon 5.3; our additions are marked in the README.

One module per family: :mod:`~pfcon.settings.core` (the :class:`Settings` object,
:func:`load_settings`), :mod:`~pfcon.settings.env` (typed readers, :class:`SettingsError`),
:mod:`~pfcon.settings.storage`, and one per compute family (:mod:`~pfcon.settings.kubernetes`,
:mod:`~pfcon.settings.cromwell`, :mod:`~pfcon.settings.batch` for Slurm,
:mod:`~pfcon.settings.admission` for docker and podman). Import from here, as before.
"""

from __future__ import annotations

from pfcon.settings.admission import QUEUEING_ENGINES, AdmissionSettings
from pfcon.settings.batch import SLURM_RUNTIMES, SlurmSettings
from pfcon.settings.core import (
    DEFAULT_STOREBASE_MOUNT,
    DEV_PASSWORD,
    DEV_SECRET_KEY,
    DEV_USER,
    METRICS_MODES,
    MIN_SECRET_KEY_BYTES,
    STATE_DIR,
    STORE_PREPARED_ENV,
    ContainerUser,
    IdRange,
    ObservabilitySettings,
    ServingSettings,
    Settings,
    load_serving_settings,
    load_settings,
    parse_container_user,
    parse_id_range,
    parse_labels,
)
from pfcon.settings.cromwell import CromwellSettings
from pfcon.settings.env import GiB, MiB, SettingsError
from pfcon.settings.kubernetes import (
    KubernetesSettings,
    is_label_key,
    is_label_value,
    parse_names,
    parse_node_selector,
)
from pfcon.settings.storage import (
    INNETWORK_STORAGES,
    S3_DEV_DEFAULTS,
    S3_MAX_PART,
    S3_MIN_PART,
    SWIFT_DEV_DEFAULTS,
    LinkLimits,
    S3Settings,
    SwiftSettings,
    ZipLimits,
)

__all__ = [
    "DEFAULT_STOREBASE_MOUNT",
    "DEV_PASSWORD",
    "DEV_SECRET_KEY",
    "DEV_USER",
    "INNETWORK_STORAGES",
    "METRICS_MODES",
    "MIN_SECRET_KEY_BYTES",
    "QUEUEING_ENGINES",
    "S3_DEV_DEFAULTS",
    "S3_MAX_PART",
    "S3_MIN_PART",
    "SLURM_RUNTIMES",
    "STATE_DIR",
    "STORE_PREPARED_ENV",
    "SWIFT_DEV_DEFAULTS",
    "AdmissionSettings",
    "ContainerUser",
    "CromwellSettings",
    "GiB",
    "IdRange",
    "KubernetesSettings",
    "LinkLimits",
    "MiB",
    "ObservabilitySettings",
    "S3Settings",
    "ServingSettings",
    "Settings",
    "SettingsError",
    "SlurmSettings",
    "SwiftSettings",
    "ZipLimits",
    "is_label_key",
    "is_label_value",
    "load_serving_settings",
    "load_settings",
    "parse_container_user",
    "parse_id_range",
    "parse_labels",
    "parse_names",
    "parse_node_selector",
]
