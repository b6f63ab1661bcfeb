"""Campaign use cases shared by the API and the dashboard: submission, control, hygiene,
preview, reports, idempotency, CSV intake, job views and provider webhooks. May import sending
and everything below it; never api, dashboard or cli."""
