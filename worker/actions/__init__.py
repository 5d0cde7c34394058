"""Every action of a person, in one place: the CLI and the console call these and nothing else.

Each action checks who acts (an enabled operator with the role it needs: ``audit.require``), does its work
and writes its audit row (who, when, what, why, before → after) in ONE transaction, so an action without
its audit row, or an audit row without its action, cannot exist.

- ``payouts``: approve (four-eyes: distinct approvers, never one who retried it), retry, cancel
- ``inbox``: replay, dismiss
- ``routes``: a route's off switch
- ``operators``: add, disable, enable, password, role, TOTP; login and logout (audited too)
"""
from worker.actions.audit import Actor, Forbidden, Refused

__all__ = ["Actor", "Forbidden", "Refused"]
