"""ENVIRONMENT=production turns what is convenient on a laptop into a refusal to start."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from app.core.crypto import load_field_keys
from app.core.embedded import resolve_urls
from app.core.security import _generate_private_key_pem, load_signing_keys
from app.core.settings import ProductionMisconfigured, Settings

CONFIGURED = {
    "jwt_private_key": _generate_private_key_pem(),
    "field_encryption_keys": "k1:" + "A" * 43 + "=",
    "blind_index_key": "B" * 44,
    "database_url": "postgresql://careloop@db.internal/careloop",
    "redis_url": "redis://cache.internal:6379/0",
}


def _settings(**values) -> Settings:
    return Settings(_env_file=None, environment="production", **values)


def test_development_refuses_nothing():
    assert Settings(_env_file=None, environment="development").production_problems() == []


def test_production_names_every_problem_at_once():
    problems = _settings(webhook_allow_http_localhost=True).production_problems()
    assert [p.split(" ")[0] for p in problems] == [
        "JWT_PRIVATE_KEY", "FIELD_ENCRYPTION_KEYS", "BLIND_INDEX_KEY", "DATABASE_URL", "REDIS_URL",
        "WEBHOOK_ALLOW_HTTP_LOCALHOST"]
    assert _settings(**CONFIGURED).production_problems() == []


def test_production_never_generates_keys_nor_starts_embedded_servers(tmp_path):
    bare = _settings(data_dir=tmp_path)
    with pytest.raises(ProductionMisconfigured, match="JWT_PRIVATE_KEY"):
        load_signing_keys(bare)
    with pytest.raises(ProductionMisconfigured, match="FIELD_ENCRYPTION_KEYS"):
        load_field_keys(bare)
    with pytest.raises(ProductionMisconfigured, match="DATABASE_URL"):
        resolve_urls(bare)
    assert list(tmp_path.iterdir()) == []  # nothing was generated or started
    configured = _settings(data_dir=tmp_path, **CONFIGURED)
    assert load_signing_keys(configured).public_pem.startswith("-----BEGIN PUBLIC KEY-----")
    assert load_field_keys(configured).active_kid == "k1"


def test_the_commands_refuse_to_start_and_say_why(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JWT_", "FIELD_", "BLIND_", "DATABASE_",
                                                                   "REDIS_URL", "APP_DATABASE"))}
    env.update(ENVIRONMENT="production", CARELOOP_DATA_DIR=str(tmp_path))
    for command in ("worker", "serve", "migrate"):
        done = subprocess.run([sys.executable, "-m", "app.cli", command], env=env, capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 2, (command, done.stderr)
        assert "ENVIRONMENT=production refuses to start" in done.stderr and "DATABASE_URL" in done.stderr
    assert list(tmp_path.iterdir()) == []
