"""SWIFT_* settings: pfcon 5.3's dev defaults, required in production, checked without a network."""

from __future__ import annotations

import socket

import pytest

from pfcon.settings import SettingsError, SwiftSettings, load_settings

PROD = {
    "SECRET_KEY": "s3cret-" + "x" * 32,
    "PFCON_USER": "u",
    "PFCON_PASSWORD": "p",
    "STOREBASE": "/data/sb",
    "PFCON_INNETWORK": "true",
    "STORAGE_ENV": "swift",
}
SWIFT = {
    "SWIFT_AUTH_URL": "https://swift.example.org:8443/auth/v1.0",
    "SWIFT_USERNAME": "acct:me",
    "SWIFT_KEY": "k",
    "SWIFT_CONTAINER_NAME": "chris",
}


def test_development_defaults_are_pfcon_53s() -> None:
    dev = {
        "APPLICATION_MODE": "development",
        "STOREBASE": "/x",
        "PFCON_INNETWORK": "yes",
        "STORAGE_ENV": "swift",
    }
    swift = load_settings(dev).swift
    assert (swift.username, swift.key, swift.container_name) == ("chris:chris1234", "testing", "users")
    assert swift.auth_url == "http://127.0.0.1:8080/auth/v1.0"  # the dev server of scripts/setup.d


def test_production_reads_every_variable() -> None:
    assert load_settings({**PROD, **SWIFT}).swift == SwiftSettings(
        "https://swift.example.org:8443/auth/v1.0", "acct:me", "k", "chris"
    )


@pytest.mark.parametrize("missing", sorted(SWIFT))
def test_production_requires_each(missing: str) -> None:
    env = {**PROD, **{k: v for k, v in SWIFT.items() if k != missing}}
    with pytest.raises(SettingsError) as error:
        load_settings(env)
    assert error.value.variable == missing


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("SWIFT_AUTH_URL", "swift:8080/auth"),
        ("SWIFT_AUTH_URL", "ftp://swift/auth"),
        ("SWIFT_AUTH_URL", "http://swift:99999/auth"),
        ("SWIFT_USERNAME", "no-account"),
        ("SWIFT_CONTAINER_NAME", "a/b"),
    ],
)
def test_bad_values_name_the_variable(variable: str, value: str) -> None:
    with pytest.raises(SettingsError) as error:
        load_settings({**PROD, **SWIFT, variable: value})
    assert error.value.variable == variable


def test_swift_variables_are_ignored_for_other_storages() -> None:
    env = {**PROD, "STORAGE_ENV": "fslink", "SWIFT_AUTH_URL": "not a url"}
    assert load_settings(env).swift == SwiftSettings()


def test_reading_settings_makes_no_network_call(monkeypatch) -> None:
    def refuse(*_args, **_kwargs):
        raise AssertionError("settings tried to open a connection")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    assert load_settings({**PROD, **SWIFT, "SWIFT_AUTH_URL": "http://swift.invalid:8080/auth/v1.0"}).swift
