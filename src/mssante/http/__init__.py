"""The HTTP adapter: OAuth2 token endpoint, JWKS and the integration API (R18).

``create_app(services, token_validator=None)`` builds the FastAPI application;
``start_http``/``stop_http`` (:mod:`mssante.http.server`) run it with uvicorn on the current
asyncio loop, next to the mail listeners.
"""

from mssante.http.app import HttpServices, create_app
from mssante.http.server import start_http, stop_http

__all__ = ["HttpServices", "create_app", "start_http", "stop_http"]
