"""S3_* settings: development defaults on the loopback S3 API, required in production, no network."""

from __future__ import annotations

import socket

import pytest

from pfcon.settings import S3Settings, SettingsError, load_settings

MiB = 1024 * 1024
PROD = {
    "SECRET_KEY": "x" * 32,
    "PFCON_USER": "u",
    "PFCON_PASSWORD": "p",
    "STOREBASE": "/data/sb",
    "PFCON_INNETWORK": "true",
    "STORAGE_ENV": "s3",
}
S3 = {
    "S3_ENDPOINT_URL": "https://s3.example.org:9000/",
    "S3_ACCESS_KEY": "AKIAEXAMPLE",
    "S3_SECRET_KEY": "secret",
    "S3_BUCKET_NAME": "chris-data",
}


def test_development_defaults_are_the_loopback_s3_api() -> None:
    dev = {
        "APPLICATION_MODE": "development",
        "STOREBASE": "/x",
        "PFCON_INNETWORK": "yes",
        "STORAGE_ENV": "s3",
    }
    assert load_settings(dev).s3 == S3Settings(
        "http://127.0.0.1:8080", "chris:chris1234", "testing", "us-east-1", "users", 64 * MiB
    )


def test_production_reads_every_variable() -> None:
    env = {**PROD, **S3, "S3_REGION_NAME": "eu-west-3", "S3_MULTIPART_THRESHOLD": str(16 * MiB)}
    assert load_settings(env).s3 == S3Settings(
        "https://s3.example.org:9000", "AKIAEXAMPLE", "secret", "eu-west-3", "chris-data", 16 * MiB
    )
    assert load_settings({**PROD, **S3}).s3.region_name == "us-east-1"  # pfcon 6's default


@pytest.mark.parametrize("missing", sorted(S3))
def test_production_requires_each(missing: str) -> None:
    env = {**PROD, **{k: v for k, v in S3.items() if k != missing}}
    with pytest.raises(SettingsError) as error:
        load_settings(env)
    assert error.value.variable == missing


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("S3_ENDPOINT_URL", "s3.example.org:9000"),
        ("S3_ENDPOINT_URL", "ftp://s3.example.org"),
        ("S3_ENDPOINT_URL", "http://s3:99999"),
        ("S3_BUCKET_NAME", "Upper"),
        ("S3_BUCKET_NAME", "a/b"),
        ("S3_BUCKET_NAME", "ab"),
        ("S3_BUCKET_NAME", "a..b"),
        ("S3_REGION_NAME", "EU West"),
        ("S3_MULTIPART_THRESHOLD", str(5 * MiB - 1)),  # below S3's smallest part
        ("S3_MULTIPART_THRESHOLD", str(5 * 1024 * MiB + 1)),  # above its largest
        ("S3_MULTIPART_THRESHOLD", "64M"),
    ],
)
def test_bad_values_name_the_variable(variable: str, value: str) -> None:
    with pytest.raises(SettingsError) as error:
        load_settings({**PROD, **S3, variable: value})
    assert error.value.variable == variable


def test_s3_variables_are_ignored_for_other_storages() -> None:
    env = {**PROD, "STORAGE_ENV": "fslink", "S3_ENDPOINT_URL": "not a url", "S3_BUCKET_NAME": "A"}
    assert load_settings(env).s3 == S3Settings()


def test_s3_needs_in_network_mode() -> None:
    with pytest.raises(SettingsError) as error:
        load_settings({**PROD, **S3, "PFCON_INNETWORK": "false"})
    assert error.value.variable == "STORAGE_ENV" and "PFCON_INNETWORK" in str(error.value)


def test_reading_settings_makes_no_network_call(monkeypatch) -> None:
    def refuse(*_args, **_kwargs):
        raise AssertionError("settings tried to open a connection")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    assert load_settings({**PROD, **S3, "S3_ENDPOINT_URL": "http://s3.invalid:9000"}).s3.endpoint_url
