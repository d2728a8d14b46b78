"""The app-facing HTTP API: one powertools `APIGatewayHttpResolver` with a router per module
(decision 015). `herald.api.resolver.build_resolver()` assembles it; the OpenAPI document it
generates is `schemas/openapi.json`."""
