"""E-mail to portal users about their organization's requests: reference, status and a portal link, never PHI."""
