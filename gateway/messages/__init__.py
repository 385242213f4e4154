"""Messages on a request: the thread between the requester and the facility's records staff, and staff notes."""
