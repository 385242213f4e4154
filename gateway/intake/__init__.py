"""Intake: the request resource, its documents, and the checks a request passes before routing."""
