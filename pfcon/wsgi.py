"""WSGI entry point: ``gunicorn -c python:pfcon.gunicorn_config pfcon.wsgi:application``."""

import sys

from pfcon.app import create_app
from pfcon.settings import SettingsError

try:
    application = create_app()
except SettingsError as error:
    print(f"pfcon: configuration error: {error}", file=sys.stderr)
    sys.exit(3)  # gunicorn's "worker failed to boot": the master stops instead of retrying
