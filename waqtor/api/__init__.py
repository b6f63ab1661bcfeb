"""The HTTP API (FastAPI): WaQtor's routes and response shapes."""
