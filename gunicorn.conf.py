"""Picked up by a plain ``gunicorn pfcon.wsgi:application`` run from this folder (pfcon's
documented entry point), so it serves with pfcon's threaded settings too."""

from pfcon.gunicorn_config import *  # noqa: F403
