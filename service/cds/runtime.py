"""The CDS face's process-wide objects, built once when the app starts and closed at shutdown."""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from service.cds.auth import CdsAuthenticator
from service.cds.clients import ClientRegistry
from service.cds.egress import FhirServerGuard, pinned_transport, private_hosts
from service.cds.jwks import JwksCache
from service.cds.prefetch import FhirReader
from service.container import Container
from service.usecases.cds_feedback import CdsFeedbackService


@dataclass(slots=True)
class CdsRuntime:
    container: Container
    registry: ClientRegistry
    authenticator: CdsAuthenticator
    reader: FhirReader
    feedback: CdsFeedbackService
    _http: tuple[httpx.AsyncClient, ...]

    @property
    def base_url(self) -> str:
        """Where EHRs reach labrec (``LABREC_PUBLIC_URL``): the ``aud`` every token must name."""
        return self.container.settings.public_url.rstrip("/")

    @classmethod
    def build(
        cls,
        container: Container,
        *,
        fhir_transport: httpx.AsyncBaseTransport | None = None,
        jwks_transport: httpx.AsyncBaseTransport | None = None,
    ) -> CdsRuntime:
        """``*_transport`` put a mock at the true edge in tests; production uses the network."""
        settings = container.settings
        budget = settings.cds_fhir_timeout
        limits = httpx.Limits(max_connections=50, max_keepalive_connections=20)
        fhir_http = httpx.AsyncClient(
            timeout=httpx.Timeout(budget, connect=min(budget, 2.0)),
            limits=limits,
            # Connections only to the addresses the guard checked (no DNS rebinding, no proxy).
            transport=fhir_transport or pinned_transport(limits),
            trust_env=False,
        )
        guard = FhirServerGuard(
            allow_http=settings.cds_fhir_allow_http,
            private_hosts=private_hosts(settings.cds_fhir_allow_private_hosts),
            resolve_timeout=budget,
        )
        jwks_http = httpx.AsyncClient(
            timeout=httpx.Timeout(3.0, connect=2.0), transport=jwks_transport
        )
        registry = ClientRegistry(container.sessions)
        return cls(
            container=container,
            registry=registry,
            authenticator=CdsAuthenticator(
                container.sessions,
                registry,
                JwksCache(jwks_http),
                writes=container.recommendations.writes,  # jti claims share its transactions
            ),
            reader=FhirReader(fhir_http, budget=budget, guard=guard),
            feedback=CdsFeedbackService(container.sessions, container.catalog, container.clock),
            _http=(fhir_http, jwks_http),
        )

    async def aclose(self) -> None:
        for client in self._http:
            await client.aclose()
