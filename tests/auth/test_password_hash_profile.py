"""GATEWAY_PASSWORD_HASH_PROFILE: production's Argon2 cost, or the least cost for test suites only."""

from __future__ import annotations

import pytest
from argon2 import extract_parameters

from gateway.auth import passwords
from gateway.settings import Settings, SettingsError

PRODUCTION = {"GATEWAY_ENV": "production", "GATEWAY_SECRET_KEY": "s" * 40, "GATEWAY_AUDIT_CHAIN_KEY": "c" * 40,
              "GATEWAY_PORTAL_URL": "https://records.example.test"}


def test_production_refuses_the_test_profile_and_unknown_profiles(tmp_path):
    assert Settings.from_env(PRODUCTION, data_dir=tmp_path).password_hash_profile == "rfc9106"
    with pytest.raises(SettingsError, match="rfc9106 in production"):
        Settings.from_env({**PRODUCTION, "GATEWAY_PASSWORD_HASH_PROFILE": "test-minimal"}, data_dir=tmp_path)
    with pytest.raises(SettingsError, match="must be rfc9106 or test-minimal"):
        Settings.from_env({"GATEWAY_PASSWORD_HASH_PROFILE": "md5"}, data_dir=tmp_path)


def test_each_profile_verifies_the_others_hashes():
    try:
        passwords.prepare("rfc9106")
        strong = passwords.hash_password("correct horse battery")
        passwords.prepare("test-minimal")
        light = passwords.hash_password("correct horse battery")
        assert extract_parameters(strong).time_cost == 3 and extract_parameters(strong).memory_cost == 65536
        assert extract_parameters(light).time_cost == 1 and extract_parameters(light).memory_cost == 8
        assert passwords.verify_password(strong, "correct horse battery")
        assert not passwords.verify_password(strong, "correct horse battery!")
        passwords.prepare("rfc9106")
        assert passwords.verify_password(light, "correct horse battery")
        assert not passwords.verify_password(None, "correct horse battery")
    finally:
        passwords.prepare("test-minimal")  # the suite's profile (tests/conftest.py)
