"""The append-only audit trail of every login, denial, PHI access and status change."""
