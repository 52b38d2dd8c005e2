"""Start-up configuration: refuse unsafe or malformed settings with one clear line."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # conftest is loaded by pytest; importing it at run time could pick another
    from conftest import BackendLauncher


def test_production_without_jwt_secret_refuses_to_start(launcher: BackendLauncher) -> None:
    result = launcher.run_to_exit({"ENVIRONMENT": "production", "JWT_SECRET_KEY": None})
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr  # one line, no traceback
    assert "JWT_SECRET_KEY is not set and ENVIRONMENT=production" in lines[0]
    assert not (launcher.workdir / "data").exists()  # nothing was created before refusing


def test_malformed_database_url_refuses_to_start(launcher: BackendLauncher) -> None:
    result = launcher.run_to_exit({"DATABASE_URL": "postgres://db/lumina"})
    assert result.returncode != 0
    assert "DATABASE_URL must start with 'sqlite://'" in result.stderr
    assert "Traceback" not in result.stderr


def test_development_without_jwt_secret_uses_a_random_key_and_warns(
    launcher: BackendLauncher,
) -> None:
    backend = launcher.start(env={"JWT_SECRET_KEY": None})
    api = backend.api()
    auth = api.new_user("dev@example.com")
    assert api.http.get("/api/auth/me", headers=auth).status_code == 200
    warnings = [e for e in backend.log_events() if e["level"] == "warning"]
    assert any("JWT_SECRET_KEY not set" in e["event"] for e in warnings)
