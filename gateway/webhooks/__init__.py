"""Webhooks of requester organizations: registration, signed deliveries with retries, and SSRF-safe sending."""
