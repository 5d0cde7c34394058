"""Operators: add, disable, enable, password, role, TOTP — and login/logout, which are audited too.

Passwords are argon2id hashes (argon2-cffi's defaults, rehashed on login when those defaults grow). A
disable or a password change bumps ``session_epoch``, which ends the operator's console sessions.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, select

from core import clock
from core.runtime import Runtime
from models.operators import AuditEvent, Operator
from models.states import AuditAction, OperatorRole
from providers.values import first_unclean
from worker.actions.audit import Actor, Refused, reason_of, record, require

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
MIN_PASSWORD = 10
MAX_PASSWORD = 1024  # argon2 takes any length; a bound keeps a hostile form from costing more than a login
_hasher = PasswordHasher()
# Verified against when the name is unknown, so an unknown name costs what a wrong password costs.
_DUMMY_HASH = _hasher.hash("not a password of anyone")


@dataclass(frozen=True)
class Identity:
    """A logged-in operator, as the console keeps it."""

    id: int
    name: str
    role: str
    session_epoch: int


# Login throttling: failed logins (audit rows) within the window, per operator name and per address. Past the
# limit a login is refused unchecked, so nothing more is learnt and no row is written until the window moves.
THROTTLE_WINDOW = timedelta(minutes=15)
THROTTLE_PER_NAME = 5
THROTTLE_PER_IP = 20


def check_name(name: str) -> str:
    if not NAME_RE.match(name or ""):
        raise Refused("an operator name is 1-63 lower-case letters, digits, '.', '_' or '-', starting with a "
                      "letter or digit")
    return name


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise Refused(f"a password needs at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise Refused(f"a password has at most {MAX_PASSWORD} characters")
    unclean = first_unclean(password)
    if unclean:
        raise Refused(f"a password cannot hold {unclean}")
    return password


def _get(s, name: str) -> Operator:
    op = s.execute(select(Operator).where(Operator.name == name).with_for_update()).scalar_one_or_none()
    if op is None:
        raise Refused(f"no operator {name!r}")
    return op


def _public(op: Operator) -> dict:
    """What an audit row may hold of an operator: never the hash or the TOTP secret."""
    return {"name": op.name, "role": op.role, "disabled": op.disabled_at is not None,
            "totp": op.totp_secret is not None}


def add(runtime: Runtime, actor: Actor, name: str, role: str, password: str, reason: str | None = None) -> None:
    check_name(name)
    role = OperatorRole(role)
    check_password(password)
    why = reason_of(reason or "new operator")
    with runtime.db.session() as s:
        require(s, actor, OperatorRole.ADMIN)
        if s.execute(select(Operator.id).where(Operator.name == name)).first() is not None:
            raise Refused(f"operator {name!r} exists already")
        op = Operator(name=name, role=role, password_hash=_hasher.hash(password))
        s.add(op)
        s.flush()
        record(s, actor, AuditAction.OPERATOR_ADD, "operator", name, reason=why, after=_public(op))


def _change(runtime: Runtime, actor: Actor, name: str, action: AuditAction, reason: str | None, **values) -> None:
    why = reason_of(reason)
    with runtime.db.session() as s:
        me = require(s, actor, OperatorRole.ADMIN)
        op = _get(s, name)
        if me is not None and me.id == op.id and action in (AuditAction.OPERATOR_DISABLE, AuditAction.OPERATOR_ROLE):
            raise Refused("an admin cannot disable or demote themselves: ask another admin")
        before = _public(op)
        for key, value in values.items():
            setattr(op, key, value)
        op.updated_at = clock.now_utc()
        if action in (AuditAction.OPERATOR_DISABLE, AuditAction.OPERATOR_PASSWORD):
            op.session_epoch += 1  # ends the sessions made before
        s.flush()
        record(s, actor, action, "operator", name, reason=why, before=before, after=_public(op))


def disable(runtime: Runtime, actor: Actor, name: str, reason: str | None) -> None:
    _change(runtime, actor, name, AuditAction.OPERATOR_DISABLE, reason, disabled_at=clock.now_utc())


def enable(runtime: Runtime, actor: Actor, name: str, reason: str | None) -> None:
    _change(runtime, actor, name, AuditAction.OPERATOR_ENABLE, reason, disabled_at=None)


def set_password(runtime: Runtime, actor: Actor, name: str, password: str, reason: str | None = None) -> None:
    check_password(password)
    _change(runtime, actor, name, AuditAction.OPERATOR_PASSWORD, reason or "password changed",
            password_hash=_hasher.hash(password))


def set_role(runtime: Runtime, actor: Actor, name: str, role: str, reason: str | None) -> None:
    _change(runtime, actor, name, AuditAction.OPERATOR_ROLE, reason, role=OperatorRole(role))


def set_totp(runtime: Runtime, actor: Actor, name: str, on: bool, reason: str | None = None) -> str | None:
    """Turn the second factor on (returns the new base32 secret, shown once) or off."""
    secret = pyotp.random_base32() if on else None
    _change(runtime, actor, name, AuditAction.OPERATOR_TOTP, reason or ("TOTP on" if on else "TOTP off"),
            totp_secret=secret)
    return secret


def list_operators(runtime: Runtime) -> list[dict]:
    with runtime.db.session() as s:
        ops = s.execute(select(Operator).order_by(Operator.name)).scalars().all()
        return [{**_public(op), "created_at": op.created_at, "last_login_at": op.last_login_at} for op in ops]


class LoginFailed(Exception):
    """Wrong name, password or code, or a disabled operator: one message for all (nothing to probe)."""


class LoginThrottled(LoginFailed):
    """Too many failed logins lately for this name or this address: refused without checking."""

    def __init__(self, wait: int) -> None:
        super().__init__(f"too many failed logins: try again in {wait} s")
        self.wait = wait


def _throttle(s, name: str, ip: str | None) -> None:
    since = clock.now_utc() - THROTTLE_WINDOW
    failed = (AuditEvent.action == AuditAction.LOGIN_FAILED) & (AuditEvent.at >= since)
    for column, value, limit in ((AuditEvent.object_id, name, THROTTLE_PER_NAME),
                                 (AuditEvent.source_ip, ip, THROTTLE_PER_IP)):
        if value is None:
            continue
        count, oldest = s.execute(select(func.count(), func.min(AuditEvent.at))
                                  .where(failed, column == value)).one()
        if count >= limit:
            raise LoginThrottled(max(1, int((oldest + THROTTLE_WINDOW - clock.now_utc()).total_seconds()) + 1))


def login(runtime: Runtime, name: str, password: str, code: str | None, ip: str | None) -> Identity:
    """Check a login and audit it (login or login_failed); refused unchecked while throttled."""
    name, password, code = name[:100], password[:MAX_PASSWORD], (code or "")[:16]
    if not name or first_unclean(name) or first_unclean(password) or first_unclean(code):
        raise LoginFailed("wrong name or password")
    with runtime.db.session() as s:
        _throttle(s, name, ip)
        op = s.execute(select(Operator).where(Operator.name == name)).scalar_one_or_none()
        ok: bool
        try:
            ok = _hasher.verify(op.password_hash if op is not None else _DUMMY_HASH, password)
        except (VerificationError, InvalidHashError):
            ok = False
        why = None
        if op is None or not ok:
            why = "wrong name or password"
        elif op.disabled_at is not None:
            why = "operator disabled"
        elif op.totp_secret is not None and not pyotp.TOTP(op.totp_secret).verify(code.strip(), valid_window=1):
            why = "wrong or missing TOTP code"
        actor = Actor(name, "console", ip)
        if why is not None:
            record(s, actor, AuditAction.LOGIN_FAILED, "operator", name, reason=why)
        else:
            assert op is not None
            if _hasher.check_needs_rehash(op.password_hash):
                op.password_hash = _hasher.hash(password)
            op.last_login_at = clock.now_utc()
            record(s, actor, AuditAction.LOGIN, "operator", op.name)
            identity = Identity(op.id, op.name, op.role, op.session_epoch)
    if why is not None:
        raise LoginFailed(why)
    return identity


def logout(runtime: Runtime, actor: Actor) -> None:
    with runtime.db.session() as s:
        record(s, actor, AuditAction.LOGOUT, "operator", actor.name)


def current(runtime: Runtime, operator_id: int, epoch: int) -> Identity | None:
    """The operator of a console session, or None when it was disabled or its sessions were ended since."""
    with runtime.db.session() as s:
        op = s.get(Operator, operator_id)
        if op is None or op.disabled_at is not None or op.session_epoch != epoch:
            return None
        return Identity(op.id, op.name, op.role, op.session_epoch)

