"""Settings: parsed once, validated, and every error names its variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from pfcon.settings import (
    DEV_PASSWORD,
    DEV_USER,
    AdmissionSettings,
    ServingSettings,
    SettingsError,
    load_serving_settings,
    load_settings,
)
from pfcon.storebase import StoreBase

PROD = {"SECRET_KEY": "s3cret-" + "x" * 32, "PFCON_USER": "u", "PFCON_PASSWORD": "p", "STOREBASE": "/data/sb"}


def test_development_mode_gives_dev_credentials() -> None:
    settings = load_settings({"APPLICATION_MODE": "development", "STOREBASE": "/x"})
    assert (settings.pfcon_user, settings.pfcon_password) == (DEV_USER, DEV_PASSWORD)
    assert settings.storage_env == "zipfile" and settings.container_env == "docker"
    assert settings.job_logs_tail == 1000 and settings.remove_jobs and not settings.ignore_limits


@pytest.mark.parametrize("missing", ["SECRET_KEY", "PFCON_USER", "PFCON_PASSWORD"])
def test_production_requires_credentials(missing: str) -> None:
    env = {k: v for k, v in PROD.items() if k != missing}
    with pytest.raises(SettingsError) as error:
        load_settings(env)
    assert error.value.variable == missing


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("APPLICATION_MODE", "staging"),
        ("CONTAINER_ENV", "lxc"),
        ("COMPUTE_VOLUME_TYPE", "nfs"),
        ("PFCON_INNETWORK", "maybe"),
        ("JOB_LOGS_TAIL", "many"),
        ("JOB_LOGS_TAIL", "-1"),
        ("SHM_SIZE", "0"),
        ("CONTAINER_USER", "1000"),
        ("CONTAINER_USER", "a:b"),
        ("CONTAINER_USER", "10-5:1"),
        ("JOB_LABELS", "novalue"),
        ("STORAGE_ENV", "swift"),  # swift needs PFCON_INNETWORK=true
        ("STOREBASE", "relative/path"),
        ("VOLUME_NAME", "vol"),  # conflicts with host volumes
        ("MAX_UPLOAD_BYTES", "0"),
        ("REMOVE_JOBS", "perhaps"),
    ],
)
def test_bad_values_name_the_variable(variable: str, value: str) -> None:
    with pytest.raises(SettingsError) as error:
        load_settings({**PROD, variable: value})
    assert error.value.variable == variable
    assert str(error.value).startswith(f"{variable}: ")


def test_host_volume_needs_storebase() -> None:
    env = {k: v for k, v in PROD.items() if k != "STOREBASE"}
    with pytest.raises(SettingsError, match="STOREBASE: is required"):
        load_settings(env)


def test_docker_local_volume_refuses_storebase() -> None:
    with pytest.raises(SettingsError) as error:
        load_settings({**PROD, "COMPUTE_VOLUME_TYPE": "docker_local_volume"})
    assert error.value.variable == "STOREBASE"


def test_innetwork_requires_an_innetwork_storage() -> None:
    with pytest.raises(SettingsError) as error:
        load_settings({**PROD, "PFCON_INNETWORK": "true"})
    assert error.value.variable == "STORAGE_ENV"


def test_full_configuration_is_parsed() -> None:
    settings = load_settings(
        {
            **PROD,
            "CONTAINER_USER": "1000-1009:2000",
            "JOB_LABELS": "a=1, b.c/d=two",
            "SHM_SIZE": "64",
            "ENABLE_HOME_WORKAROUND": "yes",
            "IGNORE_LIMITS": "yes",
            "REMOVE_JOBS": "no",
            "JOB_LOGS_TAIL": "50",
            "STOREBASE_MOUNT": "/mnt/sb",
            "AUTH_TOKEN_LIFETIME": "60",
        }
    )
    assert settings.job_labels == {"a": "1", "b.c/d": "two"}
    assert settings.shm_size_mib == 64 and settings.job_logs_tail == 50
    assert settings.enable_home_workaround and settings.ignore_limits and not settings.remove_jobs
    assert settings.storebase_mount == Path("/mnt/sb") and settings.token_lifetime_seconds == 60
    assert settings.container_user is not None
    for _ in range(50):
        uid, gid = settings.container_user.pick().split(":")
        assert 1000 <= int(uid) <= 1009 and gid == "2000"


def test_storebase_mount_falls_back_to_storebase_outside_a_container() -> None:
    settings = load_settings(PROD)
    expected = "/var/local/storeBase" if Path("/var/local/storeBase").is_dir() else "/data/sb"
    assert settings.storebase_mount == Path(expected)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PFCON_BIND", "notaport"),
        ("PFCON_BIND", "host:99999"),
        ("PFCON_BIND", ":5005"),
        ("PFCON_WORKERS", "abc"),
        ("PFCON_WORKERS", "0"),
        ("PFCON_THREADS", "-1"),
        ("PFCON_LOG_LEVEL", "loud"),
    ],
)
def test_bad_serving_values_name_the_variable(variable: str, value: str) -> None:
    with pytest.raises(SettingsError) as error:
        load_serving_settings({variable: value})
    assert error.value.variable == variable


def test_serving_defaults_and_forms() -> None:
    assert load_serving_settings({}) == ServingSettings("0.0.0.0:5005", 2, 16, "info")
    for bind in ("127.0.0.1:30005", "[::1]:8080", "unix:/run/pfcon.sock"):
        assert load_serving_settings({"PFCON_BIND": bind}).bind == bind


def test_storebase_is_never_created(tmp_path: Path) -> None:
    missing = tmp_path / "typo"
    with pytest.raises(SettingsError) as error:
        StoreBase(missing).ensure()
    assert error.value.variable == "STOREBASE_MOUNT" and not missing.exists()
    StoreBase(tmp_path).ensure()
    assert (tmp_path / ".pfcon-uploads").is_dir()


def test_settings_an_engine_cannot_honour_stop_the_service() -> None:
    from pfcon.compute import check_capabilities
    from pfcon.compute.base import Capabilities
    from pfcon.compute.dockerapi.docker import DockerBackend

    class Limited(DockerBackend):
        name = "limited"
        capabilities = Capabilities(shm_size=False, labels=False)

    backend = Limited(client=object())  # never reached: the check reads only settings and flags
    for variable, value in (("SHM_SIZE", "64"), ("JOB_LABELS", "a=b")):
        with pytest.raises(SettingsError) as error:
            check_capabilities(load_settings({**PROD, variable: value}), backend)
        assert error.value.variable == variable
    check_capabilities(load_settings(PROD), backend)


def test_the_job_store_defaults_to_sqlite_in_storebase() -> None:
    settings = load_settings(
        {"APPLICATION_MODE": "development", "STOREBASE": "/data", "STOREBASE_MOUNT": "/sb"}
    )
    assert settings.database_url == "sqlite:////sb/.pfcon/pfcon.db" and settings.history_days == 30


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("postgresql://u:p@db:5432/pfcon", "postgresql+psycopg://u:p@db:5432/pfcon"),
        ("postgresql+psycopg://u:p@db/pfcon", "postgresql+psycopg://u:p@db/pfcon"),
        ("sqlite:////var/lib/pfcon.db", "sqlite:////var/lib/pfcon.db"),
    ],
)
def test_database_urls_are_accepted(value: str, expected: str) -> None:
    env = {"APPLICATION_MODE": "development", "STOREBASE": "/data", "PFCON_DATABASE_URL": value}
    assert load_settings(env).database_url == expected


@pytest.mark.parametrize(
    "value", ["mysql://u@db/pfcon", "pfcon.db", "sqlite:///relative.db", "postgresql:///pfcon"]
)
def test_bad_database_urls_name_the_variable(value: str) -> None:
    env = {"APPLICATION_MODE": "development", "STOREBASE": "/data", "PFCON_DATABASE_URL": value}
    with pytest.raises(SettingsError, match="PFCON_DATABASE_URL"):
        load_settings(env)


def test_link_limits_are_read_and_checked() -> None:
    env = {"APPLICATION_MODE": "development", "STOREBASE": "/x"}
    limits = load_settings({**env, "MAX_JOB_LINKS": "5", "MAX_LINKED_ENTRIES": "0"}).link_limits
    assert (limits.max_links, limits.max_entries, limits.max_bytes) == (5, 0, 256 * 1024**3)
    with pytest.raises(SettingsError, match="MAX_LINKED_BYTES"):
        load_settings({**env, "MAX_LINKED_BYTES": "-1"})


def test_the_queue_is_on_for_docker_and_podman_only() -> None:
    for engine in ("docker", "podman"):
        admission = load_settings({**PROD, "CONTAINER_ENV": engine}).admission
        assert admission == AdmissionSettings(queue=True)  # capacity from the engine, no overcommit
    swarm = {**PROD, "CONTAINER_ENV": "swarm"}
    assert load_settings(swarm).admission.queue is False
    with pytest.raises(SettingsError, match="swarm queues jobs itself") as error:
        load_settings({**swarm, "PFCON_QUEUE": "on"})
    assert error.value.variable == "PFCON_QUEUE"
    assert load_settings({**PROD, "PFCON_QUEUE": "off"}).admission == AdmissionSettings()


def test_gpu_ids_to_hand_out_are_listed_once_and_agree_with_the_count() -> None:
    listed = load_settings({**PROD, "PFCON_GPU_DEVICES": " GPU-aa, GPU-bb ,"}).admission
    assert (listed.gpus, listed.gpu_devices) == (2, ("GPU-aa", "GPU-bb"))
    both = load_settings({**PROD, "PFCON_GPU_DEVICES": "1,3", "PFCON_CAPACITY_GPUS": "2"}).admission
    assert (both.gpus, both.gpu_devices) == (2, ("1", "3"))
    assert load_settings(PROD).admission.gpu_devices is None
    for value, problem in (("0,0", "names a GPU twice"), ("0,1,2", "PFCON_CAPACITY_GPUS says 2")):
        with pytest.raises(SettingsError, match=problem) as error:
            load_settings({**PROD, "PFCON_GPU_DEVICES": value, "PFCON_CAPACITY_GPUS": "2"})
        assert error.value.variable == "PFCON_GPU_DEVICES"


def test_the_queue_needs_limits() -> None:
    assert load_settings({**PROD, "IGNORE_LIMITS": "yes"}).admission.queue is False
    with pytest.raises(SettingsError, match="IGNORE_LIMITS"):
        load_settings({**PROD, "IGNORE_LIMITS": "yes", "PFCON_QUEUE": "yes"})


def test_capacity_settings_are_parsed_and_checked() -> None:
    admission = load_settings(
        {
            **PROD,
            "PFCON_CAPACITY_CPUS": "6.5",
            "PFCON_CAPACITY_MEMORY_MIB": "24576",
            "PFCON_CAPACITY_GPUS": "0",
            "PFCON_CPU_OVERCOMMIT": "1.5",
            "PFCON_FAIR_SHARE": "yes",
            "PFCON_RUNTIME_ESTIMATES": "yes",
        }
    ).admission
    assert admission == AdmissionSettings(True, 6.5, 24576, 0, 1.5, True, estimates=True)
    assert load_settings(PROD).admission.estimates is False
    for variable, value in (
        ("PFCON_CAPACITY_CPUS", "lots"),
        ("PFCON_CAPACITY_CPUS", "0"),
        ("PFCON_CAPACITY_CPUS", "nan"),
        ("PFCON_CAPACITY_MEMORY_MIB", "0"),
        ("PFCON_CAPACITY_GPUS", "-1"),
        ("PFCON_CPU_OVERCOMMIT", "0.5"),
        ("PFCON_CPU_OVERCOMMIT", "inf"),
        ("PFCON_FAIR_SHARE", "maybe"),
        ("PFCON_RUNTIME_ESTIMATES", "maybe"),
    ):
        with pytest.raises(SettingsError) as error:
            load_settings({**PROD, variable: value})
        assert error.value.variable == variable, (variable, value)
