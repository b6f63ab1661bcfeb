"""HTTP plumbing both faces share (the API and the dashboard): API-key roles, the client's
address, the failed-attempt guard, body limits. May import campaigns and everything below;
never api, dashboard or cli."""
