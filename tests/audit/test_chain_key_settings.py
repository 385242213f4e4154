"""GATEWAY_AUDIT_CHAIN_KEY and the checkpoint settings."""

from __future__ import annotations

import pytest

from gateway.settings import Settings, SettingsError

SECRET = "s" * 40
CHAIN_KEY = "c" * 40
# A production environment complete in everything but the chain key (e-mail links must be https there).
PRODUCTION = {"GATEWAY_ENV": "production", "GATEWAY_SECRET_KEY": SECRET,
              "GATEWAY_PORTAL_URL": "https://records.example.test"}


def test_production_requires_its_own_chain_key(tmp_path):
    with pytest.raises(SettingsError, match="GATEWAY_AUDIT_CHAIN_KEY is required"):
        Settings.from_env(PRODUCTION, data_dir=tmp_path)
    with pytest.raises(SettingsError, match="GATEWAY_AUDIT_CHAIN_KEY is required"):
        Settings.from_env({**PRODUCTION, "GATEWAY_AUDIT_CHAIN_KEY": "short"}, data_dir=tmp_path)
    with pytest.raises(SettingsError, match="must differ"):
        Settings.from_env({**PRODUCTION, "GATEWAY_AUDIT_CHAIN_KEY": SECRET}, data_dir=tmp_path)
    settings = Settings.from_env({**PRODUCTION, "GATEWAY_AUDIT_CHAIN_KEY": CHAIN_KEY}, data_dir=tmp_path)
    assert settings.audit_chain_key == CHAIN_KEY
    assert settings.redacted()["audit_chain_key"] == "***"
    assert CHAIN_KEY not in repr(settings)


def test_development_derives_the_chain_key_from_the_secret_key(tmp_path):
    one = Settings.from_env({"GATEWAY_SECRET_KEY": SECRET}, data_dir=tmp_path)
    two = Settings.from_env({"GATEWAY_SECRET_KEY": SECRET}, data_dir=tmp_path)
    other = Settings.from_env({"GATEWAY_SECRET_KEY": "t" * 40}, data_dir=tmp_path)
    assert one.audit_chain_key == two.audit_chain_key != other.audit_chain_key
    assert len(one.audit_chain_key) >= 32 and SECRET not in one.audit_chain_key
    explicit = Settings.from_env({"GATEWAY_SECRET_KEY": SECRET, "GATEWAY_AUDIT_CHAIN_KEY": CHAIN_KEY},
                                 data_dir=tmp_path)
    assert explicit.audit_chain_key == CHAIN_KEY


def test_checkpoint_settings(tmp_path):
    settings = Settings.from_env({"GATEWAY_AUDIT_CHECKPOINT_BUCKET": "audit-cp",
                                  "GATEWAY_AUDIT_CHECKPOINT_EVERY_ENTRIES": "10",
                                  "GATEWAY_AUDIT_CHECKPOINT_EVERY_SECONDS": "5",
                                  "GATEWAY_AUDIT_CHECKPOINT_RETENTION_DAYS": "30"}, data_dir=tmp_path)
    assert (settings.audit_checkpoint_bucket, settings.audit_checkpoint_every_entries,
            settings.audit_checkpoint_every_seconds,
            settings.audit_checkpoint_retention_days) == ("audit-cp", 10, 5, 30)
    defaults = Settings.from_env({}, data_dir=tmp_path)
    assert (defaults.audit_checkpoint_every_entries, defaults.audit_checkpoint_every_seconds,
            defaults.audit_checkpoint_retention_days) == (100, 60, 2190)
    for name in ("EVERY_ENTRIES", "EVERY_SECONDS", "RETENTION_DAYS"):
        with pytest.raises(SettingsError, match=name):
            Settings.from_env({f"GATEWAY_AUDIT_CHECKPOINT_{name}": "0"}, data_dir=tmp_path)
