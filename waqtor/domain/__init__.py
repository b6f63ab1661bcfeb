"""The domain core: recipients, statuses, templates, phone numbers, ETA. No Redis, no HTTP."""
