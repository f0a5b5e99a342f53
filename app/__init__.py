"""The facegate HTTP service: API routes, services and the gallery store."""
