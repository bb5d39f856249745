"""Who is calling a CDS route: the EHR's signed JWT, checked as CDS Hooks 2.0 requires.

Header: ``alg`` in ``ALGORITHMS`` (never ``none`` or HMAC), ``typ`` JWT, ``kid`` required, and
``jku`` — when present — equal to the issuer's registered JWKS URL. Payload: ``iss`` registered,
``aud`` exactly the called URL, ``exp``/``iat``/``jti`` required, ``jti`` unused by that issuer.
The organisation is the registration's, never something in a request body.

Every failure is the same 401 to the caller; the reason goes to the log as a short code (never
the token). ES256/RS256 are accepted beside the recommended ES384/RS384: the spec forbids only
``none`` and symmetric algorithms, both are asymmetric with at least 128-bit security (RFC 7518
§3.1), and the key's type and curve are still bound to the algorithm.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, Final

import jwt
import msgspec
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.cds.clients import ClientRecord, ClientRegistry
from service.cds.jwks import JwksCache, keys_of
from service.domain.principal import Principal
from service.domain.text import has_control_characters
from service.persistence.cds import purge_expired_jti, remember_jti

log = logging.getLogger("labrec.cds.auth")

#: alg -> (JWK kty, EC curve)
ALGORITHMS: Final[dict[str, tuple[str, str | None]]] = {
    "ES384": ("EC", "P-384"),
    "RS384": ("RSA", None),
    "ES256": ("EC", "P-256"),
    "RS256": ("RSA", None),
}
LEEWAY_SECONDS: Final = 60
_MAX_TOKEN: Final = 8192
_PRIVATE_MEMBERS: Final = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
_PURGE_EVERY: Final = 300.0


class CdsCaller(msgspec.Struct, frozen=True):
    client_id: str
    organisation_id: str
    iss: str

    def principal(self) -> Principal:
        """The caller as the use cases see it; the tenant is the registration's."""
        return Principal(
            organisation_id=self.organisation_id,
            actor=f"cds-client:{self.client_id}",
            role="integration",
        )


class AuthFailure(Exception):
    """Why a token was refused (for logs and tests; never sent to the caller)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class CdsAuthenticator:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        registry: ClientRegistry,
        jwks: JwksCache,
        *,
        now: Callable[[], float] = time.time,
    ) -> None:
        self._sessions = sessions
        self._registry = registry
        self._jwks = jwks
        self._now = now
        self._last_purge = 0.0

    async def authenticate(
        self, authorization: str | None, audiences: Sequence[str]
    ) -> CdsCaller | None:
        """The caller, or None for any failure (the route answers a generic 401)."""
        try:
            return await self.verify(authorization, audiences)
        except AuthFailure as failure:
            log.info("cds token refused", extra={"reason": failure.reason})
            return None

    async def verify(self, authorization: str | None, audiences: Sequence[str]) -> CdsCaller:
        token = _bearer(authorization)
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise AuthFailure("malformed") from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in ALGORITHMS:
            raise AuthFailure("algorithm")
        typ = header.get("typ")
        if not isinstance(typ, str) or typ.upper() != "JWT":
            raise AuthFailure("typ")
        kid = header.get("kid")
        if not isinstance(kid, str) or not 0 < len(kid) <= 256:
            raise AuthFailure("kid")
        iss = unverified.get("iss")
        if not isinstance(iss, str) or not 0 < len(iss) <= 255 or has_control_characters(iss):
            raise AuthFailure("issuer")
        client = await self._registry.by_iss(iss)
        if client is None:
            raise AuthFailure("issuer")
        jku = header.get("jku")
        if jku is not None and (client.jwks_url is None or jku != client.jwks_url):
            raise AuthFailure("jku")
        key = _select_key(await self._candidate_keys(client, kid), kid, alg)
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=list(audiences),
                issuer=iss,
                leeway=LEEWAY_SECONDS,
                options={"require": ["iss", "aud", "exp", "iat", "jti"], "strict_aud": False},
            )
        except jwt.ExpiredSignatureError:
            raise AuthFailure("expired") from None
        except jwt.InvalidAudienceError:
            raise AuthFailure("audience") from None
        except jwt.InvalidSignatureError:
            raise AuthFailure("signature") from None
        except jwt.PyJWTError:
            raise AuthFailure("claims") from None
        jti = claims["jti"]
        if not isinstance(jti, str) or not 0 < len(jti) <= 255 or has_control_characters(jti):
            raise AuthFailure("jti")
        if not await self._first_use(iss, jti, claims["exp"]):
            raise AuthFailure("replay")
        return CdsCaller(client_id=client.id, organisation_id=client.organisation_id, iss=iss)

    async def _candidate_keys(self, client: ClientRecord, kid: str) -> list[dict[str, Any]]:
        if client.jwks_url is not None:
            return await self._jwks.keys(client.jwks_url, kid)
        return keys_of(client.jwks) or []

    async def _first_use(self, iss: str, jti: str, exp: Any) -> bool:
        """Remember the jti until the token can no longer be used (exp plus leeway)."""
        expires = dt.datetime.fromtimestamp(float(exp) + LEEWAY_SECONDS, dt.UTC)
        now = self._now()
        async with self._sessions() as session, session.begin():
            if now - self._last_purge > _PURGE_EVERY:
                self._last_purge = now
                await purge_expired_jti(session, dt.datetime.fromtimestamp(now, dt.UTC))
            return await remember_jti(session, iss, jti, expires)


def _bearer(authorization: str | None) -> str:
    if not authorization:
        raise AuthFailure("missing")
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > _MAX_TOKEN:
        raise AuthFailure("malformed")
    return token


def _select_key(keys: list[dict[str, Any]], kid: str, alg: str) -> Any:
    """The single registered public key with this kid whose type (and curve) fit ``alg``."""
    matches = [key for key in keys if key.get("kid") == kid]
    if len(matches) != 1:
        raise AuthFailure("key")
    jwk = matches[0]
    kty, curve = ALGORITHMS[alg]
    if jwk.get("kty") != kty or (curve is not None and jwk.get("crv") != curve):
        raise AuthFailure("key")
    if jwk.get("use", "sig") != "sig" or jwk.get("alg", alg) != alg:
        raise AuthFailure("key")
    public = {name: value for name, value in jwk.items() if name not in _PRIVATE_MEMBERS}
    try:
        key = jwt.PyJWK(public, algorithm=alg).key
    except (jwt.PyJWTError, ValueError, TypeError, KeyError):
        raise AuthFailure("key") from None
    if isinstance(key, RSAPublicKey) and key.key_size < 2048:
        raise AuthFailure("key")
    return key
