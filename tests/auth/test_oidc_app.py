"""External identity provider tokens through the running app."""

from __future__ import annotations

import dataclasses

import jwt

from gateway.app import create_app
from tests.auth.test_tokens import OIDC_AUDIENCE, OIDC_ISSUER, idp  # noqa: F401  (fixture)
from tests.factories import make_tenant


def test_app_accepts_external_idp_tokens_for_known_users_only(idp, settings, db):  # noqa: F811  (fixture)
    """Through the app: the IdP proves who the person is; roles come from the gateway's own user."""
    tenant = make_tenant(db)
    app = create_app(dataclasses.replace(settings, oidc_issuer=OIDC_ISSUER, oidc_audience=OIDC_AUDIENCE,
                                         oidc_jwks_url=idp.base + "/jwks"))
    client = app.test_client()

    def me(**claims):
        token = jwt.encode(idp.claims(**claims), idp.rsa, algorithm="RS256", headers={"kid": "rsa-1"})
        return client.get("/v1/me", headers={"Authorization": f"Bearer {token}"})

    known = me(email=tenant.admin_email.upper(), email_verified=True)
    assert known.status_code == 200
    assert known.get_json()["id"] == tenant.admin_id and known.get_json()["roles"] == ["requester_admin"]
    assert me(email="stranger@example.test").status_code == 401
    assert me(email=tenant.admin_email, email_verified=False).status_code == 401
    assert me(email=tenant.admin_email, aud="another-app").status_code == 401
