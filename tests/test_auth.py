"""Tokens: pfcon 5.3's messages, UTC expiry, configurable lifetime."""

from __future__ import annotations

import re
import time

import jwt
import pytest

from pfcon.api.auth import VERIFIED_TOKENS, TokenAuth
from pfcon.errors import InvalidInput, Unauthorized
from pfcon.settings import load_settings


def _auth(**env: str) -> TokenAuth:
    return TokenAuth(load_settings({"APPLICATION_MODE": "development", "STOREBASE": "/x", **env}))


def test_token_round_trip_and_claims() -> None:
    token = _auth().issue("pfcon", "pfcon1234")
    _auth().verify(f"Bearer {token}")
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["pfcon_user"] == "pfcon"
    assert 2 * 24 * 3600 - 5 <= claims["exp"] - time.time() <= 2 * 24 * 3600 + 5


@pytest.mark.parametrize(("user", "password"), [("pfcon", "nope"), ("nope", "pfcon1234"), ("", "")])
def test_wrong_credentials(user: str, password: str) -> None:
    with pytest.raises(InvalidInput, match=re.escape("Unable to log in with provided credentials.")):
        _auth().issue(user, password)


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (None, "Missing authorization header."),
        ("Token abc", "Invalid authorization header."),
        ("Bearer", "Invalid authorization header."),
        ("Bearer not-a-jwt", "Invalid authorization token."),
    ],
)
def test_bad_headers(header: str | None, message: str) -> None:
    with pytest.raises(Unauthorized, match=re.escape(message)):
        _auth().verify(header)


def test_token_signed_with_another_key_is_invalid() -> None:
    token = _auth(SECRET_KEY="another-secret-key-of-a-decent-length-0123456789").issue("pfcon", "pfcon1234")
    with pytest.raises(Unauthorized, match=re.escape("Invalid authorization token.")):
        _auth().verify(f"Bearer {token}")


def test_expired_token() -> None:
    """Also once the token was verified (and remembered) while it was valid."""
    auth = _auth(AUTH_TOKEN_LIFETIME="2")
    token = auth.issue("pfcon", "pfcon1234")
    auth.verify(f"Bearer {token}")
    expires = jwt.decode(token, options={"verify_signature": False})["exp"]
    time.sleep(max(0.0, expires - time.time()) + 0.05)
    with pytest.raises(Unauthorized, match=re.escape("Expired authorization token.")):
        auth.verify(f"Bearer {token}")
    with pytest.raises(Unauthorized, match=re.escape("Expired authorization token.")):
        auth.verify(f"Bearer {token}")


def test_verified_tokens_are_remembered_exactly_and_boundedly(monkeypatch: pytest.MonkeyPatch) -> None:
    """A valid token is decoded once; a token that differs in one character, or is signed with
    another key, is decoded (and refused) each time; the memory holds VERIFIED_TOKENS tokens."""
    auth = _auth()
    decoded = []
    decode = jwt.decode
    monkeypatch.setattr(jwt, "decode", lambda token, *a, **k: decoded.append(token) or decode(token, *a, **k))
    token = auth.issue("pfcon", "pfcon1234")
    for header in (f"Bearer {token}", f"bearer  {token} ", f"Bearer {token}"):
        auth.verify(header)
    assert decoded == [token]
    forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    other = _auth(SECRET_KEY="another-secret-key-of-a-decent-length-0123456789").issue("pfcon", "pfcon1234")
    for bad in (forged, other, forged, other):
        with pytest.raises(Unauthorized, match=re.escape("Invalid authorization token.")):
            auth.verify(f"Bearer {bad}")
    assert decoded == [token, forged, other, forged, other]
    claims = jwt.decode(token, options={"verify_signature": False})
    many = [jwt.encode({**claims, "n": n}, auth._key, algorithm="HS256") for n in range(VERIFIED_TOKENS + 10)]
    for each in many:
        auth.verify(f"Bearer {each}")
    assert len(auth._verified) == VERIFIED_TOKENS
    before = len(decoded)
    auth.verify(f"Bearer {many[-1]}")  # the newest are kept
    auth.verify(f"Bearer {token}")  # the first was dropped: decoded again
    assert decoded[before:] == [token]


def test_token_without_expiry_is_refused() -> None:
    token = jwt.encode(
        {"pfcon_user": "pfcon"},
        load_settings({"APPLICATION_MODE": "development", "STOREBASE": "/x"}).secret_key,
    )
    with pytest.raises(Unauthorized):
        _auth().verify(f"Bearer {token}")
