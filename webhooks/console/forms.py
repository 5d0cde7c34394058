"""The console's forms (WTForms through Flask-WTF; the CSRF token is checked for every POST in auth.py)."""
from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import BooleanField, PasswordField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length

from worker.actions.audit import MAX_REASON


class LoginForm(FlaskForm):
    name = StringField("Name", validators=[DataRequired(), Length(max=100)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=1024)])
    code = StringField("TOTP code (if you set one up)", validators=[Length(max=16)])


class ActionForm(FlaskForm):
    """Every action on a payout or an inbox event: a reason is required."""

    reason = TextAreaField("Reason", validators=[DataRequired(message="a reason is required"),
                                                 Length(max=MAX_REASON)])


class SwitchForm(ActionForm):
    enabled = BooleanField("Payouts on")
