"""The ``pfcon`` command: ``serve`` the API, ``check`` the configuration and the engine."""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from pfcon import __version__
from pfcon.api.openapi import document_text
from pfcon.settings import Settings, SettingsError, load_serving_settings, load_settings

SECRET_FIELDS = ("secret_key", "pfcon_password")


def _public(settings: Settings) -> dict[str, Any]:
    from sqlalchemy.engine import make_url

    data = asdict(settings)
    for name in SECRET_FIELDS:
        data[name] = "***"
    data["database_url"] = make_url(settings.database_url).render_as_string(hide_password=True)
    return json.loads(json.dumps(data, default=str))


def serve(args: argparse.Namespace) -> int:
    try:
        load_settings()
        load_serving_settings()
    except SettingsError as error:
        print(f"pfcon: configuration error: {error}", file=sys.stderr)
        return 2
    argv = [sys.executable, "-m", "gunicorn", "-c", "python:pfcon.gunicorn_config"]
    if args.bind:
        argv += ["--bind", args.bind]
    if args.workers:
        argv += ["--workers", str(args.workers)]
    if args.threads:
        argv += ["--threads", str(args.threads)]
    argv.append("pfcon.wsgi:application")
    os.execv(sys.executable, argv)
    return 0  # not reached


def check(_args: argparse.Namespace) -> int:
    """Validate settings, then build the service and ask the engine and storage to answer."""
    from pfcon.app import build_service
    from pfcon.errors import PfconError

    try:
        load_serving_settings()
        settings = load_settings()
        service = build_service(settings)
    except SettingsError as error:
        print(f"pfcon: configuration error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(_public(settings), indent=2))
    try:
        print(json.dumps(service.health(), indent=2))
    except PfconError as error:
        print(f"pfcon: {error.message}", file=sys.stderr)
        return 1
    finally:
        service.close()
    return 0


def slurm_script(args: argparse.Namespace) -> int:
    """Print the Slurm batch-script template in use, or the script a sample job would submit."""
    from pfcon.compute.batch.slurm import example_script, slurm_template

    try:
        # printing a script needs no credentials: development defaults unless set
        defaults = {"APPLICATION_MODE": "development", "STOREBASE": "/storeBase"}
        settings = load_settings({**defaults, **os.environ, "CONTAINER_ENV": "slurm"})
        text = example_script(settings) if args.example else slurm_template(settings).text
    except SettingsError as error:
        print(f"pfcon: configuration error: {error}", file=sys.stderr)
        return 2
    sys.stdout.write(text)
    return 0


def database(args: argparse.Namespace) -> int:
    """``pfcon db upgrade``: migrate the job store (and import old records); ``current``: say where it is."""
    from pfcon.errors import PfconError
    from pfcon.store import database as db
    from pfcon.store import migrate, open_store, prepare

    try:
        settings = load_settings()
        if args.action == "upgrade":
            prepare(settings, force=True)
        store = open_store(settings)
        try:
            revision = migrate.current(store.engine)
        finally:
            store.close()
    except SettingsError as error:
        print(f"pfcon: configuration error: {error}", file=sys.stderr)
        return 2
    except PfconError as error:
        print(f"pfcon: {error.message}", file=sys.stderr)
        return 1
    head = migrate.head()
    state = "up to date" if revision == head else f"behind: run `pfcon db upgrade` to reach {head}"
    print(f"{db.describe(settings.database_url)}: revision {revision or 'none'} ({state})")
    return 0


def openapi(args: argparse.Namespace) -> int:
    """Print or write the OpenAPI document (docs/openapi.json is its checked-in copy)."""
    if args.output:
        Path(args.output).write_text(document_text(), encoding="utf-8")
    else:
        sys.stdout.write(document_text())
    return 0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="pfcon", description="pfcon compute controller")
    parser.add_argument("--version", action="version", version=f"pfcon {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve_cmd = commands.add_parser("serve", help="serve the API with gunicorn (port 5005 unless PFCON_BIND)")
    serve_cmd.add_argument("--bind", help="address:port, default $PFCON_BIND or 0.0.0.0:5005")
    serve_cmd.add_argument("--workers", type=int, help="worker processes (default 2)")
    serve_cmd.add_argument("--threads", type=int, help="threads per worker (default 16)")
    serve_cmd.set_defaults(func=serve)
    check_cmd = commands.add_parser("check", help="validate the configuration and ping the engine")
    check_cmd.set_defaults(func=check)
    script_cmd = commands.add_parser(
        "slurm-script",
        help="print the Slurm batch-script template (SLURM_SCRIPT_TEMPLATE or pfcon's own)",
    )
    script_cmd.add_argument(
        "--example", action="store_true", help="render it for a sample job, as it would be submitted"
    )
    script_cmd.set_defaults(func=slurm_script)
    db_cmd = commands.add_parser("db", help="the job store's schema: upgrade it, or show its revision")
    db_cmd.add_argument("action", choices=("upgrade", "current"))
    db_cmd.set_defaults(func=database)
    api_cmd = commands.add_parser("openapi", help="print the API's OpenAPI 3.1 document")
    api_cmd.add_argument("--output", help="write it to this file (docs/openapi.json) instead")
    api_cmd.set_defaults(func=openapi)
    args = parser.parse_args(argv)
    sys.exit(args.func(args))
