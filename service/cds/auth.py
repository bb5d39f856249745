"""Who is calling a CDS route: the EHR's signed JWT, checked as CDS Hooks 2.0 requires.

Header: ``alg`` in ``ALGORITHMS`` (never ``none`` or HMAC), ``typ`` JWT, ``kid`` required, and
``jku`` — when present — equal to the issuer's registered JWKS URL. Payload: ``iss`` registered,
``aud`` exactly the called URL, ``exp``/``iat``/``jti`` required, ``jti`` unused by that issuer.
``exp`` and ``iat`` are integers (the spec's type) and ``exp`` lies at most five minutes (the
spec's recommended lifetime) after ``iat`` and after now, give or take a leeway: a long-lived
token is a stolen token's best friend, and the bound keeps every date computed from ``exp``
sane. These checks run before the ``jti`` is recorded, so a refused token never burns its id.
The organisation is the registration's, never something in a request body.

Every failure is the same 401 to the caller; the reason goes to the log as a short code (never
the token). ES256/RS256 are accepted beside the recommended ES384/RS384: the spec forbids only
``none`` and symmetric algorithms, both are asymmetric with at least 128-bit security (RFC 7518
§3.1), and the key's type and curve are still bound to the algorithm.
"""

from __future__ import annotations

import binascii
import datetime as dt
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, Final

import jwt
import msgspec
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from jwt.utils import base64url_decode
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.cds.clients import ClientRecord, ClientRegistry
from service.cds.jwks import JwksCache, keys_of
from service.domain.principal import Principal
from service.domain.text import has_control_characters
from service.persistence.cds import stage_jti_claim, stage_jti_purge
from service.persistence.group_insert import GroupInserter, Staging

log = logging.getLogger("labrec.cds.auth")

#: alg -> (JWK kty, EC curve)
ALGORITHMS: Final[dict[str, tuple[str, str | None]]] = {
    "ES384": ("EC", "P-384"),
    "RS384": ("RSA", None),
    "ES256": ("EC", "P-256"),
    "RS256": ("RSA", None),
}
LEEWAY_SECONDS: Final = 60
#: Longest token lifetime accepted: ``exp - iat`` (one clock) up to this plus a small leeway,
#: ``exp - now`` up to this plus ``LEEWAY_SECONDS`` (the clock skew tolerated for ``iat`` too).
MAX_LIFETIME_SECONDS: Final = 300
LIFETIME_LEEWAY_SECONDS: Final = 30
_MAX_TOKEN: Final = 8192
_PRIVATE_MEMBERS: Final = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
_PURGE_EVERY: Final = 300.0
_MAX_CACHED_KEYS: Final = 256


class CdsCaller(msgspec.Struct, frozen=True):
    client_id: str
    organisation_id: str
    iss: str
    #: The FHIR base URLs registered for this client: the only fhirServer labrec reads from.
    fhir_servers: tuple[str, ...] = ()

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
        writes: GroupInserter | None = None,
    ) -> None:
        self._sessions = sessions
        self._registry = registry
        self._jwks = jwks
        self._now = now
        self._last_purge = 0.0
        #: jti claims are group-committed with other writes (one transaction for many calls)
        self._writes = writes or GroupInserter(sessions)

    async def authenticate(
        self, authorization: str | None, audiences: Sequence[str], *, known_only: bool = False
    ) -> CdsCaller | None:
        """The caller, or None for any failure (the route answers a generic 401).

        ``known_only`` (the caller's address is over its refusal budget): an issuer this process
        has not seen registered is refused without any database or JWKS work.
        """
        try:
            return await self.verify(authorization, audiences, known_only=known_only)
        except AuthFailure as failure:
            log.info("cds token refused", extra={"reason": failure.reason})
            return None

    async def verify(
        self, authorization: str | None, audiences: Sequence[str], *, known_only: bool = False
    ) -> CdsCaller:
        token = _bearer(authorization)
        header, unverified = _unverified(token)
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
        if known_only and not self._registry.seen_registered(iss):
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
        except (jwt.PyJWTError, ValueError, TypeError, OverflowError):
            raise AuthFailure("claims") from None
        _check_lifetime(claims, self._now())
        jti = claims["jti"]
        if not isinstance(jti, str) or not 0 < len(jti) <= 255 or has_control_characters(jti):
            raise AuthFailure("jti")
        if not await self._first_use(iss, jti, claims["exp"]):
            raise AuthFailure("replay")
        return CdsCaller(
            client_id=client.id,
            organisation_id=client.organisation_id,
            iss=iss,
            fhir_servers=client.fhir_servers,
        )

    async def _candidate_keys(self, client: ClientRecord, kid: str) -> list[dict[str, Any]]:
        if client.jwks_url is not None:
            return await self._jwks.keys(client.jwks_url, kid)
        return keys_of(client.jwks) or []

    async def _first_use(self, iss: str, jti: str, exp: Any) -> bool:
        """Remember the jti until the token can no longer be used (exp plus leeway)."""
        expires = dt.datetime.fromtimestamp(float(exp) + LEEWAY_SECONDS, dt.UTC)
        now = self._now()
        staged = Staging()
        stage_jti_claim(staged, iss, jti, expires)
        if now - self._last_purge > _PURGE_EVERY:
            self._last_purge = now
            stage_jti_purge(staged, dt.datetime.fromtimestamp(now, dt.UTC))
        return await self._writes.claim_and_commit(staged)


def _check_lifetime(claims: dict[str, Any], now: float) -> None:
    """Integer ``exp``/``iat``; ``exp`` at most five minutes (plus leeway) after ``iat`` and now."""
    exp, iat = claims.get("exp"), claims.get("iat")
    if not isinstance(exp, int) or not isinstance(iat, int):
        raise AuthFailure("claims")
    if isinstance(exp, bool) or isinstance(iat, bool):
        raise AuthFailure("claims")
    if exp - iat > MAX_LIFETIME_SECONDS + LIFETIME_LEEWAY_SECONDS:
        raise AuthFailure("lifetime")
    if exp > now + MAX_LIFETIME_SECONDS + LEEWAY_SECONDS:
        raise AuthFailure("lifetime")


def _bearer(authorization: str | None) -> str:
    if not authorization:
        raise AuthFailure("missing")
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > _MAX_TOKEN:
        raise AuthFailure("malformed")
    return token


def _unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and payload, read once without checking anything but their shape: they only pick
    the issuer and key; ``jwt.decode`` then checks the signature and claims of the same token."""
    parts = token.split(".")
    if len(parts) != 3:
        raise AuthFailure("malformed")
    try:
        header = msgspec.json.decode(base64url_decode(parts[0]))
        payload = msgspec.json.decode(base64url_decode(parts[1]))
    except (binascii.Error, ValueError, msgspec.DecodeError):
        raise AuthFailure("malformed") from None
    if not isinstance(header, dict) or not isinstance(payload, dict):
        raise AuthFailure("malformed")
    return header, payload


#: (alg, the JWK's public members as sorted JSON) -> parsed key: a changed or rotated JWK is a
#: new entry, so caching never keeps a key the registration or its JWKS no longer has.
_PARSED_KEYS: dict[tuple[str, bytes], Any] = {}


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
        cache_key = (alg, msgspec.json.encode(public, order="sorted"))
    except (TypeError, msgspec.EncodeError):
        raise AuthFailure("key") from None
    key = _PARSED_KEYS.get(cache_key)
    if key is not None:
        return key
    try:
        key = jwt.PyJWK(public, algorithm=alg).key
    except (jwt.PyJWTError, ValueError, TypeError, KeyError):
        raise AuthFailure("key") from None
    if isinstance(key, RSAPublicKey) and key.key_size < 2048:
        raise AuthFailure("key")
    if len(_PARSED_KEYS) >= _MAX_CACHED_KEYS:
        _PARSED_KEYS.clear()
    _PARSED_KEYS[cache_key] = key
    return key
