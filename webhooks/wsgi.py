"""WSGI entry point for gunicorn: ``gunicorn webhooks.wsgi:app``.

Settings come from the environment (``EXSYNC_*``) at import; a bad value stops the start with a message
naming the key. Do not turn on gunicorn's access log with the default format: request paths carry the
webhook tokens.
"""
from webhooks.app import create_app

app = create_app()
