"""The CDS Hooks 2.0 face: discovery, service calls and feedback under ``/cds-services``.

``plugin.CdsHooksPlugin`` wires it into the app. A call is authenticated (``auth``), read
leniently (``wire``, ``fhir_read``, ``prefetch``), translated into the REST use case's
``RecommendationRequest`` (``translate``), answered through ``RecommendationService`` and turned
into a card (``cards``, ``detail``); issued cards and feedback are kept by
``usecases.cds_feedback``.
"""
