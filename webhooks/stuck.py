"""The operator's page: everything stuck, in one place. ``GET /stuck`` (HTML) and ``GET /stuck.json``.

Same token as the API: ``Authorization: Bearer <token>``, or HTTP Basic with any user name and the token
as password (so a browser can open it). 404 when no API token is configured.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from flask import Blueprint, Response, current_app, render_template_string

from core.clock import now_utc
from models.queries import TOP_ROWS
from webhooks.api import jsonable
from webhooks.auth import require_api_token
from webhooks.openapi import documented
from worker import notify

bp = Blueprint("stuck", __name__)

# (key in the report, title, what it means, columns shown)
SECTIONS = [
    ("payouts_needs_review", "Payouts waiting for a person",
     "needs_review: retries ran out, a limit or the auto-pay ceiling was hit, or the bid left its payout status. "
     "<code>exsync payouts show ID</code>, then approve, retry or cancel.",
     ["id", "exchanger", "remote_id", "provider", "amount", "currency", "reason", "updated_at"]),
    ("payouts_parked", "Payouts parked",
     "The provider had not enough money: tried again after a long back-off. Top up the balance, or retry.",
     ["id", "exchanger", "remote_id", "provider", "amount", "currency", "reason", "next_attempt_at"]),
    ("inbox_dead", "Inbox events dead",
     "Attempts ran out, or the callback was malformed. Replay them with <code>exsync inbox replay</code> once "
     "the cause is fixed.",
     ["id", "endpoint", "received_at", "attempts", "last_error", "payload"]),
    ("inbox_failed", "Inbox events failing",
     "Callbacks whose processing failed: retried with back-off until their attempts run out.",
     ["id", "endpoint", "received_at", "attempts", "next_attempt_at", "last_error", "payload"]),
    ("inbox_unprocessed", "Inbox events not processed after 5 minutes",
     "Received but never handled: is a worker running, is the broker up?",
     ["id", "endpoint", "received_at", "attempts", "next_attempt_at", "payload"]),
    ("polls_gave_up", "Polls that gave up",
     "Bids still live after the give-up time: nobody re-reads them any more.",
     ["exchanger", "remote_id", "status", "polls", "last_polled_at", "gave_up_at", "last_error"]),
    ("polls_overdue", "Polls overdue by more than 5 minutes",
     "Beat or the workers are not keeping up.",
     ["exchanger", "remote_id", "status", "next_poll_at", "polls", "last_error"]),
    ("bids_stale", "Live bids not observed for an hour",
     "No callback, poll or sweep has seen them lately.",
     ["exchanger", "remote_id", "status", "observed_at", "updated_at"]),
    ("sweeps_lagging", "Sweeps lagging or failing",
     "No finished sweep within three sweep intervals, or the last one failed.",
     ["exchanger", "last_finished_at", "cursor_time", "last_seen", "last_error"]),
    ("balances_low", "Provider balances under their floor",
     "As last read by the notify job; floors in <code>[notifications.balance_low]</code>.",
     ["provider", "currency", "amount", "floor", "checked_at"]),
    ("workers_gone", "Workers not consuming",
     "A worker whose canary has not run within the threshold (an empty hostname: no worker consumes at all).",
     ["hostname", "canary_age", "up"]),
    ("beat_gone", "Beat gone",
     "The periodic jobs (polls, sweeps, payouts, notifications) are not being scheduled: start one "
     "<code>exsync beat</code>.",
     ["name", "last_heartbeat"]),
]

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="10">
<title>exsync — {{ total }} stuck</title>
<style>
 body { font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222; }
 h1 { font-size: 1.4em; } h2 { font-size: 1.1em; margin-top: 2em; }
 .count { display: inline-block; min-width: 2em; padding: 0 .4em; border-radius: .8em; text-align: center;
          background: #2e7d32; color: #fff; } .bad .count { background: #c62828; }
 p.help { color: #666; margin: .2em 0 .6em; }
 table { border-collapse: collapse; width: 100%; } th, td { border-bottom: 1px solid #ddd; padding: .3em .5em;
 text-align: left; vertical-align: top; font-size: .92em; } th { background: #f5f5f5; }
 td.err { color: #c62828; max-width: 40em; word-break: break-word; } .more { color: #666; }
 code { font-size: .95em; }
</style></head><body>
<h1>exsync: {% if total %}{{ total }} thing{{ "s" if total != 1 }} need{{ "" if total != 1 else "s" }} a look
{% else %}nothing stuck{% endif %}</h1>
<p class="help">Generated {{ generated_at | cell }} · refreshes every 10 s · <a href="stuck.json">JSON</a></p>
{% for key, title, help, columns in sections %}{% set sec = report[key] %}
<h2 class="{{ 'bad' if sec.count else '' }}"><span class="count">{{ sec.count }}</span> {{ title }}</h2>
<p class="help">{{ help | safe }}</p>
{% if sec.rows %}<table><tr>{% for c in columns %}<th>{{ c }}</th>{% endfor %}</tr>
{% for row in sec.rows %}<tr>{% for c in columns %}
<td class="{{ 'err' if c == 'last_error' else '' }}">{% if c == 'remote_id' and row.exchanger %}
<a href="api/v1/bids/{{ row.exchanger }}/{{ row.remote_id }}">{{ row.remote_id }}</a>
{% else %}{{ row[c] | cell }}{% endif %}</td>{% endfor %}</tr>{% endfor %}
</table>{% if sec.count > top %}<p class="more">… and {{ sec.count - top }} more</p>{% endif %}{% endif %}
{% endfor %}
</body></html>
"""


def cell(value: Any) -> str:
    """One table cell as text (Jinja escapes it): UTC times to the second, objects as JSON."""
    if value is None:
        return "–"
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    if isinstance(value, float):
        return "∞" if value == float("inf") else f"{value:.0f}"
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    if isinstance(value, (dict, list)):
        return json.dumps(value, default=str, sort_keys=True)
    return str(value)


bp.add_app_template_filter(cell, "cell")


def _report() -> dict:
    return notify.report(current_app.extensions["exsync.runtime"], now_utc())


_AUTH: list[dict[str, list[str]]] = [{"bearer": []}, {"basic": []}]


@bp.get("/stuck")
@documented(summary="What is stuck, as a page for a person", tags=["operator"], security=_AUTH,
            responses={200: {"description": "HTML", "content": {"text/html": {"schema": {"type": "string"}}}},
                       401: "Error", 404: "Error", 503: "Error"})
@require_api_token
def page():
    report = _report()
    html = render_template_string(PAGE, report=report, sections=SECTIONS, total=report["total"],
                                  generated_at=report["generated_at"], top=TOP_ROWS)
    return Response(html, content_type="text/html; charset=utf-8",
                    headers={"Cache-Control": "no-store"})


@bp.get("/stuck.json")
@documented(summary="What is stuck, as JSON", tags=["operator"], security=_AUTH,
            responses={200: "StuckReport", 401: "Error", 404: "Error", 503: "Error"})
@require_api_token
def as_json():
    return jsonable(_report())
