"""The HTTP API (FastAPI): the seed's routes and response shapes."""
