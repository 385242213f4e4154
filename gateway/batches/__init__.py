"""Bulk submission: a batch of create bodies, stored sealed and turned into drafts by one RQ job."""
