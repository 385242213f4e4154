"""A client's JWKS from its URL: fetched through the webhooks' SSRF guard, and cached.

The URL is checked exactly as a webhook target is (https, no credentials, only
public addresses unless the operator allows private ones), and the request
goes to the checked address with no proxy and no redirects; at most 64 KiB is
read.  Keys fetched are cached on the client row for CACHE_SECONDS, so a token
request does not fetch them every time, and a key rotated at the URL is seen
within that time.
"""

from __future__ import annotations

import json
from datetime import timedelta

from gateway.webhooks.ssrf import WebhookUrlForbidden, check_target

MAX_BYTES = 64 * 1024
CACHE_SECONDS = 3600
TIMEOUT = 5.0


def fetch_jwks(url: str, *, allow_private: bool) -> dict:
    """The public JWKS at `url`, or ValueError saying why not."""
    import urllib3

    from gateway.fhir.smart import public_jwks

    try:
        target = check_target(url, allow_private=allow_private)
    except WebhookUrlForbidden as error:
        raise ValueError(error.detail) from None
    limit = urllib3.Timeout(connect=TIMEOUT, read=TIMEOUT, total=TIMEOUT)
    for address in target.addresses[:4]:
        if target.scheme == "https":
            import certifi

            pool = urllib3.HTTPSConnectionPool(
                address, target.port, timeout=limit, retries=False, maxsize=1, cert_reqs="CERT_REQUIRED",
                ca_certs=certifi.where(), server_hostname=target.host, assert_hostname=target.host)
        else:
            pool = urllib3.HTTPConnectionPool(address, target.port, timeout=limit, retries=False, maxsize=1)
        try:
            response = pool.urlopen("GET", target.path, headers={"Host": target.host_header,
                                                                 "Accept": "application/json"},
                                    redirect=False, retries=False, preload_content=False, assert_same_host=False)
            body = response.read(MAX_BYTES + 1)
            response.close()
        except (urllib3.exceptions.HTTPError, OSError):
            continue
        finally:
            pool.close()
        if response.status != 200:
            raise ValueError(f"the JWKS URL answered {response.status}")
        if len(body) > MAX_BYTES:
            raise ValueError("the JWKS is larger than 64 KiB")
        try:
            return public_jwks(json.loads(body))
        except (ValueError, TypeError) as error:
            raise ValueError(f"not a usable JWKS ({error})") from None
    raise ValueError("the JWKS URL did not answer")


def cached_loader(db, *, allow_private: bool):
    """For `Smart`: a client's keys from its URL, refetched once the cached copy is older than CACHE_SECONDS."""
    from gateway.clock import utcnow
    from gateway.fhir.models import FhirClient

    def load(client) -> dict | None:
        fresh = client.jwks_fetched_at and utcnow() - client.jwks_fetched_at < timedelta(seconds=CACHE_SECONDS)
        if client.jwks is not None and fresh:
            return client.jwks
        try:
            jwks = fetch_jwks(client.jwks_url, allow_private=allow_private)
        except ValueError:
            return client.jwks  # the URL is down: the last keys fetched still serve until it is back
        with db.transaction() as session:
            row = session.get(FhirClient, client.id)
            row.jwks, row.jwks_fetched_at = jwks, utcnow()
        return jwks

    return load
