"""The operator's console: server-rendered pages at ``/console/`` (docs/console.md).

Served by the same web app as the receivers and the API (``webhooks/app.py`` calls ``init_app``), with its
own session cookie and CSRF tokens, never the API token. Modules:

- ``auth``: sessions (Flask-Login in a signed cookie scoped to /console/, with expiry; the signing key is
  kept in Postgres so every web process shares it), CSRF (Flask-WTF) on every POST, roles on every action;
- ``pages``: what a person looks at (overview, payouts, bids, inbox, providers and routes, audit);
- ``acts``: what a person does — each a form with a required reason, carried out by ``worker.actions``
  (the same code as the CLI: role check, state change and audit row in one transaction);
- ``forms``: the forms; ``templates/`` and ``static/console.css``: the HTML (no build step, no CDN).

Reads go through ``models.console`` and ``models.queries`` (paged and filtered in SQL).
"""
from __future__ import annotations

from flask import Blueprint, Flask

bp = Blueprint("console", __name__, url_prefix="/console", template_folder="templates")

# The paths notifications link to (keep them stable): /console/, /console/payouts/<id>, /console/inbox/<id>,
# /console/bids/<exchanger>/<remote_id>.


from webhooks.console import auth  # noqa: E402  (needs bp)

auth.setup_blueprint(bp)  # once: a blueprint cannot change after its first registration

from webhooks.console import acts, pages  # noqa: E402, F401  (register the views on bp)


def init_app(app: Flask) -> None:
    auth.init_app(app)
    app.register_blueprint(bp)
