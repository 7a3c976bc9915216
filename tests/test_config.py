"""The config pipeline and the CLI contract, run as real processes."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.dbtarget import DbTarget
from waha_sync.common.config.flags import add_setting_flags, load_settings
from waha_sync.common.config.settings import Settings
from waha_sync.common.errors import ConfigError

SECRET = "s3cr3t-Pa55word"


def waha_sync(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("WAHA_SYNC_")}
    base.pop("DATABASE_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "waha_sync.cli", *args],
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (["--instance", "bad name"], {}, "instance: must be 1-64 letters"),
        (["--max-file-bytes", "0"], {}, "max_file_bytes: Input should be greater than or equal"),
        (
            [],
            {"WAHA_SYNC_MAX_FILE_BYTES": "ten"},
            "max_file_bytes: Input should be a valid integer",
        ),
        (["--log-level", "LOUD"], {}, "log_level: Input should be 'DEBUG'"),
        (["--workers", "999"], {}, "workers: Input should be less than or equal to 64"),
        ([], {"WAHA_SYNC_SECRETS_DIR": "/nonexistent/secrets"}, "secrets_dir: not a directory"),
        ([], {}, "database_url: not set"),
        (["--database-url", f"mysql://u:{SECRET}@h/db"], {}, "database_url:"),
        (["--database-url", f"postgres://u:{SECRET}@h:99999/db"], {}, "database_url:"),
        (["--database-url", f"postgres://u:{SECRET}@h/db?sslmode=verify"], {}, "sslmode"),
        (
            ["--media-storage", "postgresql", "--media-database-url", f"mysql://u:{SECRET}@h/m"],
            {"WAHA_SYNC_DATABASE_URL": "postgresql://u@127.0.0.1:1/db"},
            "media_database_url: must start with postgresql:// or postgres:// (got 'mysql://...')",
        ),
        ([], {"WAHA_API_KEY": f"sha512:{SECRET}"}, "api_key: a sha512: key needs exactly 128"),
        (["--port", "70000"], {}, "port: Input should be less than or equal to 65535"),
        (
            [],
            {"WAHA_SYNC_API_KEY_EXCLUDE_PATH": "health,admin"},
            "api_key_exclude_path: unknown endpoint 'admin'; known: health, livez, status",
        ),
        (
            [],
            {"WAHA_DASHBOARD_USERNAME": "admin"},
            "dashboard_password: set both dashboard_username and dashboard_password",
        ),
        (
            ["--dashboard-password", SECRET],
            {},
            "dashboard_password: set both dashboard_username and dashboard_password",
        ),
    ],
)
def test_bad_config_exits_2_with_field_value_and_hint(
    args: list[str], env: dict[str, str], expected: str, tmp_path: Path
) -> None:
    proc = waha_sync("restore", "--sessions-dir", str(tmp_path / "never"), *args, env=env)
    assert proc.returncode == 2, proc.stderr
    assert expected in proc.stderr
    assert "Try:" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert SECRET not in proc.stderr + proc.stdout
    assert not (tmp_path / "never").exists(), "no I/O before the config is valid"


def test_unreachable_database_exits_1_after_waiting(tmp_path: Path) -> None:
    url = f"postgresql://postgres:{SECRET}@127.0.0.1:1/postgres?connect_timeout=2"
    proc = waha_sync(
        "restore",
        "--sessions-dir",
        str(tmp_path / "t"),
        "--wait-seconds",
        "2",
        env={"WAHA_SYNC_DATABASE_URL": url},
    )
    assert proc.returncode == 1
    assert "[RESTORE] waiting for the database (attempt 1)" in proc.stderr
    assert "127.0.0.1:1" in proc.stderr and "gave up after" in proc.stderr
    assert SECRET not in proc.stderr and "Traceback" not in proc.stderr


def test_every_setting_has_an_env_twin_and_a_flag() -> None:
    parser = argparse.ArgumentParser()
    add_setting_flags(parser)
    flags = {a for action in parser._actions for a in action.option_strings}
    for name in Settings.model_fields:
        assert f"--{name.replace('_', '-')}" in flags
    assert "--secrets-dir" in flags


def test_precedence_cli_over_env_over_secret_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "WAHA_SYNC_DATABASE_URL").write_text("postgresql://from-file@h/db\n")
    (secrets / "WAHA_SYNC_INSTANCE").write_text("from-file")
    monkeypatch.setenv("WAHA_SYNC_SECRETS_DIR", str(secrets))
    for key in [k for k in os.environ if k.startswith("WAHA_SYNC_") and "SECRETS" not in k]:
        monkeypatch.delenv(key)
    parser = argparse.ArgumentParser()
    add_setting_flags(parser)

    s = load_settings(parser.parse_args([]))
    assert s.require_database_url() == "postgresql://from-file@h/db"
    assert s.instance == "from-file"
    monkeypatch.setenv("WAHA_SYNC_INSTANCE", "from-env")
    assert load_settings(parser.parse_args([])).instance == "from-env"
    s = load_settings(parser.parse_args(["--instance", "from-cli"]))
    assert s.instance == "from-cli"
    assert s.sessions_dir == Path("/app/.sessions")


@pytest.mark.parametrize("alias", ["WHATSAPP_SESSIONS_POSTGRESQL_URL", "DATABASE_URL"])
def test_database_url_aliases(alias: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("WAHA_SYNC_DATABASE_URL", "WHATSAPP_SESSIONS_POSTGRESQL_URL", "DATABASE_URL"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv(alias, "postgresql://u@h/db")
    assert load_settings(None).require_database_url() == "postgresql://u@h/db"


def test_exclude_takes_a_comma_list_and_repeatable_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WAHA_SYNC_EXCLUDE", "Cache, *.bak")
    assert load_settings(None).exclude == ["Cache", "*.bak"]
    parser = argparse.ArgumentParser()
    add_setting_flags(parser)
    args = parser.parse_args(["--exclude", "a", "--exclude", "b/*"])
    excludes = load_settings(args).excludes()
    assert excludes[:2] == ("a", "b/*") and "*-wal" in excludes


def test_password_is_redacted_in_repr_and_errors() -> None:
    s = Settings(database_url=f"postgresql://u:{SECRET}@h/db")
    assert SECRET not in repr(s) and SECRET not in str(s.model_dump())
    with pytest.raises(ConfigError) as err:
        load_settings(
            argparse.Namespace(setting_database_url=f"x://u:{SECRET}@h", setting_workers=0)
        )
    assert SECRET not in err.value.render()


def test_urls_are_parsed_once_when_settings_load(tmp_path: Path) -> None:
    from waha_sync.common.sync.trees import trees

    s = Settings(database_url=f"postgresql://u:{SECRET}@db.example.com:6543/app")
    assert (s.database().host, s.database().port, s.database().database) == (
        "db.example.com",
        6543,
        "app",
    )
    moved = s.model_copy(update={"instance": "other", "sessions_dir": tmp_path})
    assert moved.database() is s.database()  # copies keep the parsed URL, no second parse
    media = s.model_copy(update={"media_storage": "postgresql"})
    assert [t.database for t in trees(media)] == [s.database(), s.database()]
    own = Settings(
        database_url="postgresql://u@main/db",
        media_storage="postgresql",
        media_database_url="postgresql://u@media/m",
    )
    assert [(t.label, t.database.host) for t in trees(own)] == [
        ("sessions", "main"),
        ("media", "media"),
    ]
    other = s.with_database("postgresql://v@elsewhere/x")
    assert (other.database().host, s.database().host) == ("elsewhere", "db.example.com")
    with pytest.raises(ConfigError) as err:
        Settings(database_url=f"postgresql://u:{SECRET}@h:0/db")
    assert err.value.message.startswith("database_url: port must be a number")
    assert SECRET not in err.value.render()
    # WAHA's media URL is not read (nor parsed) when media does not sync.
    assert Settings(media_database_url="not a url").media_storage == "local"
    with pytest.raises(ConfigError, match="database_url: not set"):
        Settings().database()


@pytest.mark.parametrize("command", ["push", "restore", "ls", "check"])
def test_help_describes_every_command(command: str) -> None:
    proc = waha_sync(command, "--help")
    assert proc.returncode == 0
    assert "--database-url" in proc.stdout
    assert ("--sessions-dir" in proc.stdout) == (command in ("push", "restore"))


def test_usage_error_exits_2() -> None:
    assert waha_sync("frobnicate").returncode == 2
    assert waha_sync("restore", "--at", "yesterday").returncode == 2


def test_check_reports_server_and_redacts(plain_db: DbTarget) -> None:
    proc = waha_sync("check", env=plain_db.env())
    assert proc.returncode == 0, proc.stderr
    assert "server:   postgresql (PostgreSQL" in proc.stdout
    assert "tls:      no" in proc.stdout and "latency:" in proc.stdout
    password = plain_db.url.split(":")[2].split("@")[0]
    assert password not in proc.stdout + proc.stderr
    assert "schema:   0" in proc.stdout


def test_json_logs(plain_db: DbTarget, tmp_path: Path) -> None:
    import json

    proc = waha_sync(
        "restore", "--sessions-dir", str(tmp_path / "t"), "--log-format", "json", env=plain_db.env()
    )
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stderr.splitlines()]
    assert {"time", "level", "component", "message"} <= set(lines[-1])
    assert any(line["component"] == "RESTORE" for line in lines)
    done = next(line for line in lines if line["message"].startswith("claimed instance"))
    assert (done["tree"], done["instance"]) == ("sessions", "default")
    (tmp_path / "t" / "creds.json").write_text("{}")
    env = plain_db.env()
    for command in ("push", "gc"):
        proc = waha_sync(
            command, "--sessions-dir", str(tmp_path / "t"), "--log-format", "json", env=env
        )
        assert proc.returncode == 0, proc.stderr
        lines = [json.loads(line) for line in proc.stderr.splitlines()]
        done = next(line for line in lines if line["message"].startswith(f"{command} done"))
        assert (done["tree"], done["instance"]) == ("sessions", "default"), done


def _env_without_url(db: DbTarget, **extra: str) -> dict[str, str]:
    env = db.env(**extra)
    del env["WAHA_SYNC_DATABASE_URL"]
    for name in ("WAHA_MEDIA_STORAGE", "WAHA_MEDIA_POSTGRESQL_URL", "WHATSAPP_FILES_FOLDER"):
        env.pop(name, None)
    env.pop("WHATSAPP_FILES_LIFETIME", None)
    return env


def test_wahas_names_work_with_one_warning_each(plain_db: DbTarget, tmp_path: Path) -> None:
    env = _env_without_url(plain_db, WHATSAPP_SESSIONS_POSTGRESQL_URL=plain_db.url)
    proc = waha_sync("restore", "--sessions-dir", str(tmp_path / "a"), env=env)
    assert proc.returncode == 0, proc.stderr
    said = (
        "WHATSAPP_SESSIONS_POSTGRESQL_URL is read as WAHA_SYNC_DATABASE_URL; WAHA (>= 2026.6) "
        "reads the same name and then keeps its sessions in PostgreSQL itself"
    )
    assert proc.stderr.count(said) == 1, proc.stderr
    password = plain_db.url.split(":")[2].split("@")[0]
    assert password not in proc.stderr + proc.stdout
    # The canonical name alone: nothing to warn about.
    proc = waha_sync("restore", "--sessions-dir", str(tmp_path / "b"), env=plain_db.env())
    assert proc.returncode == 0 and "is read as" not in proc.stderr, proc.stderr
    assert "disagree; using" not in proc.stderr


def test_disagreeing_names_warn_and_the_documented_one_wins(
    plain_db: DbTarget, tmp_path: Path
) -> None:
    wrong = f"postgresql://u:{SECRET}@127.0.0.1:1/wrong"
    env = plain_db.env(
        WHATSAPP_SESSIONS_POSTGRESQL_URL=wrong,
        WAHA_SYNC_MEDIA_STORAGE="local",
        WAHA_MEDIA_STORAGE="POSTGRESQL",
    )
    media = tmp_path / "media"
    args = ("restore", "--sessions-dir", str(tmp_path / "a"), "--media-dir", str(media))
    proc = waha_sync(*args, env=env)
    assert proc.returncode == 0, proc.stderr  # WAHA_SYNC_DATABASE_URL won: the good one
    assert (
        "database_url: WAHA_SYNC_DATABASE_URL (environment) and WHATSAPP_SESSIONS_POSTGRESQL_URL "
        "(environment) disagree; using WAHA_SYNC_DATABASE_URL"
    ) in proc.stderr
    assert (
        "media_storage: WAHA_SYNC_MEDIA_STORAGE (environment) and WAHA_MEDIA_STORAGE "
        "(environment) disagree; using WAHA_SYNC_MEDIA_STORAGE"
    ) in proc.stderr
    assert not media.exists()  # media_storage is local: nothing restored there
    assert SECRET not in proc.stderr + proc.stdout
    # Same value under both names, in another spelling: no disagreement.
    env.update(WAHA_SYNC_MEDIA_STORAGE="postgresql", WHATSAPP_SESSIONS_POSTGRESQL_URL=plain_db.url)
    proc = waha_sync(*args, env=env)
    assert proc.returncode == 0 and "disagree; using" not in proc.stderr, proc.stderr
    assert media.is_dir()
    # The environment beats a secret file whatever the names.
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "WAHA_SYNC_DATABASE_URL").write_text(wrong)
    env = _env_without_url(
        plain_db, WHATSAPP_SESSIONS_POSTGRESQL_URL=plain_db.url, WAHA_SYNC_SECRETS_DIR=str(secrets)
    )
    proc = waha_sync("restore", "--sessions-dir", str(tmp_path / "b"), env=env)
    assert proc.returncode == 0, proc.stderr
    assert (
        "database_url: WHATSAPP_SESSIONS_POSTGRESQL_URL (environment) and WAHA_SYNC_DATABASE_URL "
        "(secret file) disagree; using WHATSAPP_SESSIONS_POSTGRESQL_URL"
    ) in proc.stderr
    assert SECRET not in proc.stderr + proc.stdout
    # A flag wins over every name: no warning about the names then.
    env = plain_db.env(WHATSAPP_SESSIONS_POSTGRESQL_URL=wrong)
    flag = ("--database-url", plain_db.url)
    proc = waha_sync("restore", "--sessions-dir", str(tmp_path / "c"), *flag, env=env)
    assert proc.returncode == 0 and "disagree; using" not in proc.stderr, proc.stderr


@pytest.mark.parametrize(
    ("given", "expected"),
    [("LOCAL", "local"), ("S3", "s3"), ("POSTGRESQL", "postgresql"), ("PostgreSQL", "postgresql")],
)
def test_media_storage_takes_wahas_values(
    given: str, expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from waha_sync.common.sync.trees import media_enabled

    monkeypatch.delenv("WAHA_SYNC_MEDIA_STORAGE", raising=False)
    monkeypatch.setenv("WAHA_MEDIA_STORAGE", given)
    settings = load_settings(None)
    assert settings.media_storage == expected
    assert media_enabled(settings) == (expected == "postgresql")


def test_media_storage_rejects_other_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WAHA_MEDIA_STORAGE", "GCS")
    with pytest.raises(ConfigError) as err:
        load_settings(None)
    assert "media_storage: Input should be 'local', 'postgresql' or 's3'" in err.value.render()


def test_media_sync_checks_wahas_files_settings(plain_db: DbTarget, tmp_path: Path) -> None:
    media = tmp_path / "media"
    env = _env_without_url(plain_db)
    env["WAHA_SYNC_DATABASE_URL"] = plain_db.url
    args = ("restore", "--sessions-dir", str(tmp_path / "a"), "--media-dir", str(media))
    proc = waha_sync(*args, env={**env, "WAHA_SYNC_MEDIA_STORAGE": "postgresql"})
    assert proc.returncode == 0, proc.stderr
    assert (
        "media: WAHA writes received media to WHATSAPP_FILES_FOLDER=/tmp/whatsapp-files (WAHA's "
        f"default; not set here), not to the synced media_dir {media}"
    ) in proc.stderr
    assert "media: WHATSAPP_FILES_LIFETIME=180 (WAHA's default; not set here)" in proc.stderr
    assert f"Try: WHATSAPP_FILES_FOLDER={media}" in proc.stderr
    wrong = {"WHATSAPP_FILES_FOLDER": str(tmp_path / "elsewhere"), "WHATSAPP_FILES_LIFETIME": "60"}
    proc = waha_sync(*args, env={**env, "WAHA_SYNC_MEDIA_STORAGE": "postgresql", **wrong})
    assert f"WHATSAPP_FILES_FOLDER={tmp_path / 'elsewhere'}, not to" in proc.stderr
    assert "media: WHATSAPP_FILES_LIFETIME=60:" in proc.stderr
    right = {"WHATSAPP_FILES_FOLDER": f"{media}/", "WHATSAPP_FILES_LIFETIME": "0"}
    proc = waha_sync(*args, env={**env, "WAHA_SYNC_MEDIA_STORAGE": "postgresql", **right})
    assert proc.returncode == 0 and "warning: media:" not in proc.stderr, proc.stderr
    # Media not synced: WAHA's defaults are none of our business.
    proc = waha_sync(*args, env=env)
    assert proc.returncode == 0 and "warning: media:" not in proc.stderr, proc.stderr
