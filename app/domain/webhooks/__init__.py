"""Outgoing webhooks: outbox events delivered, signed, to integrators' HTTPS endpoints."""
