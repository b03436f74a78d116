"""The dashboard's login: a signed session cookie (HttpOnly, SameSite=Strict) with an expiry.

The cookie is Flask's (signed with SECRET_KEY, so it cannot be forged); it holds the user, when
it expires, and a CSRF token that every form posts back. Tokens never appear in URLs. Reading
pages needs only the cookie, which SameSite=Strict keeps off other sites' requests; changing
state (log in, log out) also needs the form's CSRF token and, when the browser sends one, an
Origin of this server.
"""

from __future__ import annotations

import hmac
import secrets
import time
from urllib.parse import urlsplit

from flask import Flask, Request, request, session
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface

from pfcon.errors import PfconError
from pfcon.settings import Settings

COOKIE_NAME = "pfcon_dashboard"


class Forbidden(PfconError):
    """A form post without this server's CSRF token or from another origin."""


class CookieSessions(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, opened without a signing serializer when the request
    carries no session cookie.

    Flask builds the serializer first, for every request; API calls (a status poll) never
    carry the dashboard's cookie, and building it was about 5 % of a poll's CPU.
    """

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if app.secret_key and not request.cookies.get(self.get_cookie_name(app)):
            return self.session_class()  # what Flask answers for a missing cookie
        return super().open_session(app, request)


def configure(app: Flask, settings: Settings) -> None:
    app.secret_key = settings.secret_key
    app.session_interface = CookieSessions()
    app.config.update(
        SESSION_COOKIE_NAME=COOKIE_NAME,
        SESSION_COOKIE_PATH="/dashboard",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        SESSION_COOKIE_SECURE=settings.observability.secure_cookie,
    )


def csrf_token() -> str:
    """This session's form token (one is made for an anonymous visitor too, for the login form)."""
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return session["csrf"]


def check_form() -> None:
    """Refuse a state-changing post that does not come from our own form."""
    origin = request.headers.get("Origin")
    if origin and origin != "null" and urlsplit(origin).netloc != request.host:
        raise Forbidden("this form was posted from another site")
    sent = request.form.get("csrf_token", "")
    if not hmac.compare_digest(sent.encode(), session.get("csrf", "").encode()) or not sent:
        raise Forbidden("the form has expired; reload the page and try again")


def log_in(user: str, lifetime_seconds: int) -> None:
    session.clear()  # a fresh session (and CSRF token) at each login: no fixation
    session.update(user=user, expires=int(time.time()) + lifetime_seconds, csrf=secrets.token_urlsafe(32))


def log_out() -> None:
    session.clear()


def state() -> str:
    """``valid``, ``expired`` or ``none``."""
    if "user" not in session:
        return "none"
    return "valid" if time.time() < session.get("expires", 0) else "expired"
