"""Request-level work between the routes and the models: decoding, matching, enrollment."""
