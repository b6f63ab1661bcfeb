"""The running process: the wiring of Redis, engine and providers (``Services``) and its parts
as narrow interfaces for everyone else (``parts``), logs, the bundled Redis, heartbeats, health
and the thread pool for CPU work. May import domain, store, the engine and providers; never
sending, campaigns, api, dashboard or cli."""
