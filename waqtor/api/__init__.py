"""The HTTP API (FastAPI): WaQtor's routes and response shapes. May import web, campaigns and
everything below; never the dashboard (``waqtor.cli.app`` mounts both)."""
