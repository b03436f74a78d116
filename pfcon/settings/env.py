"""Typed readers over the environment and the one error every setting raises."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from urllib.parse import urlsplit

MiB = 1024**2
GiB = 1024**3
_TRUE = {"1", "true", "yes", "on", "y", "t"}
_FALSE = {"0", "false", "no", "off", "n", "f", ""}


class SettingsError(ValueError):
    """A configuration variable has a bad or missing value."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable


class Env:
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


def http_url(text: str, variable: str) -> str:
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
