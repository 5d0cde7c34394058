"""The console's place in the OpenAPI document: every page and form is ``@documented`` like any other route
(tests/system/test_openapi.py refuses an undocumented one, and schemathesis runs them against gunicorn).

They answer HTML, never JSON, except what the app answers before a console view runs (a path that does not
match, a method not allowed: the app's JSON errors). The session is a browser's cookie, not a credential a
client presents: a request without one is not refused but redirected to the login page (302), so the
operations name no security scheme and document the redirect instead.
"""
from __future__ import annotations

from typing import Callable

from webhooks.openapi import documented, ref

HTML = {"text/html": {"schema": {"type": "string"}}}
REDIRECT = {"description": "to /console/login (no session) or back to the page after a form",
            "headers": {"Location": {"schema": {"type": "string"}}}}
NOT_FOUND = {"description": "no such object (HTML), or a path that matches no route (JSON)",
             "content": {**HTML, "application/json": {"schema": ref("Error")}}}


def _param(name: str, where: str) -> dict:
    schema: dict = {"type": "string"}
    if where == "path" and name.endswith("_id"):
        schema = {"type": "integer", "minimum": 0}
    return {"name": name, "in": where, "required": where == "path", "schema": schema}


def page(summary: str, *, path: tuple[str, ...] | list[str] = (), query: tuple[str, ...] | list[str] = (),
         public: bool = False) -> Callable:
    """A GET page (``public``: no session needed): 200 HTML, 302 to the login page, 400 for a filter it cannot
    read, 404 for an unknown object."""
    return documented(
        summary=summary, tags=["console"], security=[],
        description="HTML; " + ("no session needed." if public
                                else "without a console session: 302 to the login page."),
        parameters=[_param(n, "path") for n in path] + [_param(n, "query") for n in query],
        responses={200: {"description": "the page", "content": HTML}, 302: REDIRECT,
                   400: {"description": "a filter it cannot read (HTML)", "content": HTML},
                   403: {"description": "the operator's role may not see this (HTML)", "content": HTML},
                   404: NOT_FOUND})


def form(summary: str, fields: dict[str, dict], *, path: tuple[str, ...] | list[str] = (),
         required: tuple[str, ...] = ("csrf_token",), public: bool = False) -> Callable:
    """A POST form: 303 back to the page when done; 403 without a session (a page linking to the login), without
    the session's CSRF token, or for a role too low; 404 for an unknown object; 409 when the action is refused in
    the object's state."""
    schema = {"type": "object", "required": list(required),
              "properties": {"csrf_token": {"type": "string"}, **fields}}
    return documented(
        summary=summary, tags=["console"], security=[],
        description="An HTML form; " + ("no session needed." if public
                                        else "without a console session: 403, with a link to the login page."),
        parameters=[_param(n, "path") for n in path],
        requestBody={"required": True, "content": {"application/x-www-form-urlencoded": {"schema": schema}}},
        responses={200: {"description": "the form again, with what was wrong", "content": HTML}, 302: REDIRECT,
                   303: REDIRECT, 400: {"description": "a value it cannot read", "content": HTML},
                   403: {"description": "no valid CSRF token of this session, or a role too low", "content": HTML},
                   404: NOT_FOUND, 409: {"description": "refused in the object's state", "content": HTML},
                   413: {"description": "body too large", "content": {"application/json": {"schema": ref("Error")}}},
                   429: {"description": "too many failed logins", "content": HTML}})
