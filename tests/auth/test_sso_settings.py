"""Hospital sign-on's settings are checked at start-up, and its claim-to-facility mapping (no services)."""

from __future__ import annotations

import json

import pytest

from gateway.auth.hospital_sso import HospitalSso, provider_url
from gateway.auth.sso_accounts import mapped_facilities
from gateway.settings import Settings, SettingsError

SSO = {"sso_issuer": "https://login.hospital.example/tenant", "sso_client_id": "records-gateway",
       "sso_client_secret": "a client secret from the hospital", "sso_facility_claim": "groups",
       "sso_facility_map": json.dumps({"records-lowell": "lowell-general", "records-all": ["tufts-mc",
                                                                                         "melrosewakefield"]})}


def build(tmp_path, **overrides) -> Settings:
    return Settings.from_env({}, data_dir=tmp_path, **({"env": "test"} | SSO | overrides))


def test_a_complete_configuration_is_accepted_and_its_secret_masked(tmp_path):
    settings = build(tmp_path)
    assert settings.sso_enabled
    assert settings.sso_facilities == {"records-lowell": ("lowell-general",),
                                       "records-all": ("tufts-mc", "melrosewakefield")}
    assert settings.redacted()["sso_client_secret"] == "***"
    assert "a client secret" not in repr(settings)
    sso = HospitalSso.from_settings(settings)
    assert sso.redirect_uri == "http://localhost:8080/portal/sso/callback"
    assert "secret" not in repr(sso)


def test_off_by_default(tmp_path):
    settings = Settings.from_env({}, env="test", data_dir=tmp_path)
    assert not settings.sso_enabled and settings.sso_facilities == {}
    assert HospitalSso.from_settings(settings) is None


@pytest.mark.parametrize(("overrides", "message"), [
    ({"sso_issuer": None}, "need GATEWAY_SSO_ISSUER"),
    ({"sso_issuer": "http://login.hospital.example"}, "https"),
    ({"sso_issuer": "https://login.hospital.example/?tenant=1"}, "https"),
    ({"sso_client_secret": ""}, "GATEWAY_SSO_CLIENT_SECRET"),
    ({"sso_client_id": None}, "GATEWAY_SSO_CLIENT_ID"),
    ({"sso_token_auth_method": "none"}, "client_secret_basic or client_secret_post"),
    ({"sso_facility_claim": None}, "GATEWAY_SSO_FACILITY_CLAIM"),
    ({"sso_facility_map": None}, "GATEWAY_SSO_FACILITY_MAP"),
    ({"sso_facility_map": "not json"}, "GATEWAY_SSO_FACILITY_MAP"),
    ({"sso_facility_map": "{}"}, "GATEWAY_SSO_FACILITY_MAP"),
    ({"sso_facility_map": '["lowell-general"]'}, "GATEWAY_SSO_FACILITY_MAP"),
    ({"sso_facility_map": '{"records": []}'}, "GATEWAY_SSO_FACILITY_MAP"),
    ({"sso_facility_map": '{"records": 7}'}, "GATEWAY_SSO_FACILITY_MAP"),
])
def test_incomplete_or_unsafe_configurations_are_refused(tmp_path, overrides, message):
    with pytest.raises(SettingsError, match=message):
        build(tmp_path, **overrides)


def test_a_loopback_provider_over_http_only_outside_production(tmp_path):
    assert build(tmp_path, sso_issuer="http://127.0.0.1:9000").sso_enabled
    with pytest.raises(SettingsError, match="https"):
        build(tmp_path, sso_issuer="http://127.0.0.1:9000", env="production", secret_key="s" * 40,
              audit_chain_key="a" * 40, portal_url="https://records.example")
    assert provider_url("https://login.example/token", production=True)
    assert provider_url("http://localhost:9000/token", production=False)
    assert not provider_url("http://localhost:9000/token", production=True)
    assert not provider_url("http://login.example/token", production=False)
    assert not provider_url(None, production=False)


def test_claim_values_map_to_facilities():
    mapping = {"records-lowell": ("lowell-general",), "records-all": ("tufts-mc", "lowell-general")}
    assert mapped_facilities(["records-all", "records-lowell", "cafeteria"], mapping) == ["lowell-general",
                                                                                           "tufts-mc"]
    assert mapped_facilities("records-lowell", mapping) == ["lowell-general"]
    assert mapped_facilities(["cafeteria"], mapping) == []
    assert mapped_facilities(None, mapping) == []
    assert mapped_facilities({"records-lowell": True}, mapping) == []
    assert mapped_facilities([7, None, "records-lowell"], mapping) == ["lowell-general"]
