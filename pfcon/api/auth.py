"""Token authentication as pfcon 5.3 does it (HS256 JWT), with constant-time checks.

Tokens and passwords are never logged. Expiry is in UTC and its lifetime configurable.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import threading
import time
from collections import OrderedDict
from datetime import UTC, datetime, timedelta

import jwt

from pfcon.errors import InvalidInput, Unauthorized
from pfcon.settings import Settings

ALGORITHM = "HS256"
#: verified tokens remembered per process (a ChRIS backend shows one token for days)
VERIFIED_TOKENS = 64


class TokenAuth:
    def __init__(self, settings: Settings) -> None:
        self._user = settings.pfcon_user.encode()
        self._password = settings.pfcon_password.encode()
        self._key = settings.secret_key
        self._lifetime = timedelta(seconds=settings.token_lifetime_seconds)
        self._username = settings.pfcon_user
        self._verified: OrderedDict[str, int] = OrderedDict()  # token -> its exp, newest last
        self._verified_lock = threading.Lock()

    def check_password(self, user: str, password: str) -> bool:
        """Constant-time comparison of both, whichever is wrong; text that is not valid Unicode
        (a lone surrogate from a JSON escape) is no valid credential."""
        try:
            user_bytes, password_bytes = user.encode(), password.encode()
        except UnicodeEncodeError:
            return False
        user_ok = hmac.compare_digest(user_bytes, self._user)
        password_ok = hmac.compare_digest(password_bytes, self._password)
        return user_ok & password_ok

    def issue(self, user: str, password: str) -> str:
        """A token for the right credentials; wrong ones are a 400 as in pfcon 5.3."""
        try:
            user.encode(), password.encode()
        except UnicodeEncodeError:  # a lone surrogate from a JSON escape: no valid credential
            raise InvalidInput("pfcon_user and pfcon_password must be valid Unicode text") from None
        if not self.check_password(user, password):
            raise InvalidInput("Unable to log in with provided credentials.")
        now = datetime.now(UTC)
        claims = {"pfcon_user": self._username, "iat": now, "exp": now + self._lifetime}
        return jwt.encode(claims, self._key, algorithm=ALGORITHM)

    def verify(self, authorization: str | None) -> None:
        if not authorization:
            raise Unauthorized("Missing authorization header.")
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():  # schemes are case-insensitive (RFC 9110)
            raise Unauthorized("Invalid authorization header.")
        token = token.strip()
        if not self._seen_valid(token):
            self._remember(token, self._decode(token))

    def _decode(self, token: str) -> int:
        """The token's expiry, once its signature and claims are checked."""
        try:
            claims = jwt.decode(token, self._key, algorithms=[ALGORITHM], options={"require": ["exp"]})
        except jwt.ExpiredSignatureError:
            raise Unauthorized("Expired authorization token.") from None
        except jwt.InvalidTokenError:
            raise Unauthorized("Invalid authorization token.") from None
        return int(claims["exp"])  # as PyJWT reads it

    def _seen_valid(self, token: str) -> bool:
        """Whether this exact token was verified before and has not expired since.

        Decoding a JWT is a good share of a status poll's CPU, and a client polls with the
        same token for days. Only a token that passed :meth:`_decode` is remembered, with its
        ``exp``: a remembered token is one whose signature and claims held, and from its
        expiry on it is decoded again (and refused as expired, as PyJWT does at ``exp``).
        """
        with self._verified_lock:
            expires = self._verified.get(token)
            if expires is None:
                return False
            if time.time() < expires:
                self._verified.move_to_end(token)
                return True
            del self._verified[token]
            return False

    def _remember(self, token: str, expires: int) -> None:
        with self._verified_lock:
            self._verified[token] = expires
            while len(self._verified) > VERIFIED_TOKENS:
                self._verified.popitem(last=False)

    def verify_scraper(self, authorization: str | None) -> None:
        """A scraper shows the API token (Bearer) or the pfcon user and password (Basic), since
        Prometheus sends a fixed secret and an API token expires."""
        scheme, _, credentials = (authorization or "").partition(" ")
        if scheme != "Basic":
            self.verify(authorization)
            return
        try:
            user, sep, password = base64.b64decode(credentials.strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise Unauthorized("Invalid authorization header.") from None
        if not sep or not self.check_password(user, password):
            raise Unauthorized("Invalid credentials.")
