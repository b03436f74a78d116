"""WSGI entry point: ``gunicorn -c python:pfcon.gunicorn_config pfcon.wsgi:application``."""

import sys

from pfcon.app import create_app
from pfcon.serving import BodySlots
from pfcon.settings import SettingsError, load_serving_settings

try:
    serving = load_serving_settings()
    application = BodySlots(create_app(), serving.body_slots, serving.body_waiters, serving.client_timeout)
except SettingsError as error:
    print(f"pfcon: configuration error: {error}", file=sys.stderr)
    sys.exit(3)  # gunicorn's "worker failed to boot": the master stops instead of retrying
