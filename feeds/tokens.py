"""Bearer tokens for the feed API: issue, verify, revoke, list.

A token is `<token_id>.<secret>`: the id is public (it names the token in the CLI and in the audit
log), the secret is 256 bits from `secrets.token_urlsafe`. Only the SHA-256 of the whole token is
stored, so a copy of the warehouse gives nobody a working token; the token is shown once, when it
is issued. Checks compare digests in constant time and do the same work for unknown ids, so the
response time does not tell an attacker which ids exist.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from core.errors import EnteronceError
from warehouse import Warehouse
from warehouse import feed_tokens as rows

# Subscriber ids travel in URL paths and file names: a strict alphabet, no slashes, and a letter or
# digit first (so never `.` or `..`). A subset of what subscriptions.yaml accepts.
SUBSCRIBER_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
TOKEN_ID_PATTERN = r"^tok_[0-9a-f]{16}$"
_TOKEN = re.compile(r"^(tok_[0-9a-f]{16})\.([A-Za-z0-9_-]{43})$")
_SUBSCRIBER = re.compile(SUBSCRIBER_ID_PATTERN)
_DUMMY_HASH = hashlib.sha256(b"no such token").hexdigest()


class TokenError(EnteronceError):
    """A token cannot be issued or revoked as asked (unknown id, bad subscriber id)."""


class InvalidToken(EnteronceError):
    """A presented token is malformed, unknown or revoked (the API answers 401)."""


@dataclass(frozen=True)
class IssuedToken:
    token_id: str
    subscriber_id: str
    token: str  # shown once, never stored
    label: str | None
    issued_at: dt.datetime


@dataclass(frozen=True)
class TokenInfo:
    """What the API knows about the caller after a successful check (never the secret)."""
    token_id: str
    subscriber_id: str
    label: str | None


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def valid_subscriber_id(subscriber_id: str) -> bool:
    return bool(_SUBSCRIBER.fullmatch(subscriber_id))


def issue_token(store: Warehouse, subscriber_id: str, label: str | None = None) -> IssuedToken:
    """A new token for a subscriber; the returned `token` is the only copy there will ever be."""
    if not valid_subscriber_id(subscriber_id):
        raise TokenError(f"subscriber id {subscriber_id!r} is not valid: expected {SUBSCRIBER_ID_PATTERN}")
    token_id = f"tok_{secrets.token_hex(8)}"
    token = f"{token_id}.{secrets.token_urlsafe(32)}"
    row = rows.insert_token(store, token_id=token_id, subscriber_id=subscriber_id, token_hash=token_hash(token),
                            label=label)
    return IssuedToken(token_id, subscriber_id, token, label, row["issued_at"])


def verify_token(store: Warehouse, presented: str) -> TokenInfo:
    """The token's owner, or InvalidToken (malformed, unknown and revoked alike, by design)."""
    match = _TOKEN.fullmatch(presented or "")
    return _checked(presented, rows.token_row(store, match.group(1)) if match else None)


def verify_tokens(store: Warehouse, presented: list[str]) -> list[TokenInfo | InvalidToken]:
    """verify_token for several requests with one read (the front desk checks a batch's callers
    together): per token its owner or its InvalidToken, in order."""
    ids = [m.group(1) if (m := _TOKEN.fullmatch(p or "")) else None for p in presented]
    found = rows.token_rows(store, [i for i in ids if i is not None])
    out: list[TokenInfo | InvalidToken] = []
    for p, i in zip(presented, ids, strict=True):
        try:
            out.append(_checked(p, found.get(i) if i is not None else None))
        except InvalidToken as exc:
            out.append(exc)
    return out


def _checked(presented: str, row: dict | None) -> TokenInfo:
    # the hash is compared even without a row, so unknown and wrong tokens cost the same
    expected = row["token_hash"] if row else _DUMMY_HASH
    same = hmac.compare_digest(token_hash(presented or ""), expected)
    if not (row and same) or row["revoked_at"] is not None:
        raise InvalidToken("invalid or revoked token")
    return TokenInfo(row["token_id"], row["subscriber_id"], row["label"])


def revoke_token(store: Warehouse, token_id: str) -> None:
    """Revoke at once: the next request with this token gets 401."""
    row = rows.token_row(store, token_id)
    if row is None:
        raise TokenError(f"no token with id {token_id!r} (see `enteronce token list`)")
    if row["revoked_at"] is not None:
        raise TokenError(f"token {token_id} was already revoked at {row['revoked_at']}")
    rows.revoke_token(store, token_id)


def list_tokens(store: Warehouse, subscriber_id: str | None = None) -> list[dict]:
    """Token rows without their hashes: nothing here can be used to call the API."""
    return [{k: v for k, v in r.items() if k != "token_hash"} for r in rows.list_tokens(store, subscriber_id)]
