"""The service's own plumbing: settings, errors, auth, request context, limits, docs and the
Connexion adapters. Handlers and `db/` may use it; it imports neither."""
