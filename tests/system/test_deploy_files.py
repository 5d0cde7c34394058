"""docker-compose.yml, Procfile and Dockerfile run real `exsync` commands, in a consistent shape."""
from __future__ import annotations

import re
import shlex
import tomllib

import pytest
import yaml
from click.testing import CliRunner

from cli import cli
from tests.support import ROOT

EXSYNC_SERVICES = ("migrate", "web", "worker", "beat")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def procfile() -> dict[str, str]:
    out = {}
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, command = line.partition(":")
            out[name.strip()] = command.strip()
    return out


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", (ROOT / "Dockerfile").read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            instr, _, args = line.partition(" ")
            out.append((instr.upper(), args.strip()))
    return out


def assert_real_command(argv: list[str]) -> None:
    """argv starts with `exsync` and the rest parses as an exsync command (checked through --help)."""
    assert argv[0] == "exsync", argv
    result = CliRunner().invoke(cli, argv[1:] + ["--help"], env={}, catch_exceptions=False)
    assert result.exit_code == 0, (argv, result.output)
    assert result.output.startswith("Usage: exsync " + argv[1]), result.output


# -- compose -----------------------------------------------------------------------------------------


def test_compose_has_exactly_the_six_services(compose):
    assert set(compose["services"]) == {"postgres", "redis", "migrate", "web", "worker", "beat"}


@pytest.mark.parametrize("service,command", [("migrate", "migrate"), ("web", "web"), ("worker", "worker"),
                                             ("beat", "beat")])
def test_compose_commands_are_exsync_subcommands(compose, service, command):
    argv = compose["services"][service]["command"]
    assert argv[:2] == ["exsync", command]
    assert_real_command(argv)


def test_beat_has_exactly_one_replica(compose):
    beat = compose["services"]["beat"]
    assert beat["deploy"]["replicas"] == 1
    assert "scale" not in beat


def test_migrate_runs_once_after_postgres_is_healthy(compose):
    migrate = compose["services"]["migrate"]
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert migrate["restart"] == "no"


@pytest.mark.parametrize("service", ["web", "worker", "beat"])
def test_roles_start_after_a_successful_migration(compose, service):
    deps = compose["services"][service]["depends_on"]
    assert deps["migrate"]["condition"] == "service_completed_successfully"


def test_exsync_services_share_image_and_environment(compose):
    services = [compose["services"][name] for name in EXSYNC_SERVICES]
    env = compose["x-exsync-env"]
    for svc in services:
        assert svc["image"] == services[0]["image"]
        assert svc["environment"] == env
        assert svc["env_file"], "secrets come from an env file"
    assert env["EXSYNC_DATABASE_URL"].startswith("postgresql://")
    assert "@postgres:5432/" in env["EXSYNC_DATABASE_URL"]
    assert env["EXSYNC_REDIS_URL"].startswith("redis://redis:6379")
    assert env["EXSYNC_CONFIG"].endswith(".toml")
    # The TOML named by EXSYNC_CONFIG is mounted into every exsync container.
    for svc in services:
        assert any(v.split(":")[1] == env["EXSYNC_CONFIG"] for v in svc["volumes"])
    # No secret is written into the compose file itself.
    assert not [k for k in env if re.search(r"KEY|TOKEN|SECRET", k)]


def test_database_url_matches_the_postgres_service(compose):
    pg = compose["services"]["postgres"]
    user, db = pg["environment"]["POSTGRES_USER"], pg["environment"]["POSTGRES_DB"]
    url = compose["x-exsync-env"]["EXSYNC_DATABASE_URL"]
    assert url.startswith(f"postgresql://{user}:") and url.endswith(f"/{db}")


def test_postgres_and_redis(compose):
    pg, redis = compose["services"]["postgres"], compose["services"]["redis"]
    assert pg["image"].startswith("postgres:15")
    assert "pg_isready" in pg["healthcheck"]["test"]
    assert any(v.endswith(":/var/lib/postgresql/data") for v in pg["volumes"])
    assert set(compose["volumes"]) >= {v.split(":")[0] for v in pg["volumes"]}
    assert redis["image"].startswith("redis:7")
    assert redis["command"][redis["command"].index("--save") + 1] == ""
    assert redis["command"][redis["command"].index("--appendonly") + 1] == "no"
    assert "volumes" not in redis


def test_worker_is_restarted_after_any_failure(compose):
    """`exsync worker` exits non-zero when it stops unasked or stops consuming: the policy must restart it."""
    worker = compose["services"]["worker"]
    assert worker["restart"] in ("unless-stopped", "always", "on-failure")
    assert int(worker["stop_grace_period"].rstrip("s")) >= 60  # a warm shutdown may wait for a polling round


def test_web_port_and_healthcheck_match_the_bind(compose):
    web = compose["services"]["web"]
    port = compose["x-exsync-env"]["EXSYNC_WEB_BIND"].rpartition(":")[2]
    assert compose["x-exsync-env"]["EXSYNC_WEB_BIND"].startswith("0.0.0.0:")
    assert any(str(p).endswith(f":{port}") for p in web["ports"])
    assert f"127.0.0.1:{port}/healthz" in " ".join(web["healthcheck"]["test"])


# -- Procfile -----------------------------------------------------------------------------------------


def test_procfile_roles(procfile):
    assert set(procfile) == {"release", "web", "worker", "beat"}
    assert procfile["release"] == "exsync migrate"


@pytest.mark.parametrize("role", ["release", "web", "worker", "beat"])
def test_procfile_commands_are_exsync_subcommands(procfile, role):
    argv = shlex.split(procfile[role].replace("${PORT:-8000}", "8000"))
    assert_real_command(argv)


def test_procfile_and_compose_run_the_same_commands(procfile, compose):
    compose_cmds = {" ".join(compose["services"][s]["command"][:2]) for s in EXSYNC_SERVICES}
    procfile_cmds = {" ".join(shlex.split(c)[:2]) for c in procfile.values()}
    assert compose_cmds == procfile_cmds


def test_procfile_web_listens_on_the_platform_port(procfile):
    assert "--bind 0.0.0.0:${PORT" in procfile["web"]


# -- Dockerfile ---------------------------------------------------------------------------------------


def test_dockerfile_shape():
    steps = dockerfile()
    assert steps[0] == ("FROM", "python:3.11-slim")
    runs = " ".join(args for instr, args in steps if instr == "RUN")
    assert "pip install ." in runs
    users = [args for instr, args in steps if instr == "USER"]
    assert users and users[-1] not in ("root", "0")
    cmd = [args for instr, args in steps if instr == "CMD"][-1]
    assert yaml.safe_load(cmd) == ["exsync", "run"]
    assert_real_command(["exsync", "run"])


def test_dockerfile_copies_every_package():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = {p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]}
    sources = {src for instr, args in dockerfile() if instr == "COPY" for src in args.split()[:-1]}
    assert packages <= sources
    assert {"pyproject.toml", "README.md"} <= sources  # what `pip install .` reads besides the packages


def test_dockerignore_keeps_local_state_and_secrets_out():
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    assert {".git", ".venv", ".exsync-data", "*.env"} <= ignored


def test_compose_image_is_built_from_this_dockerfile(compose):
    for name in EXSYNC_SERVICES:
        assert compose["services"][name]["build"] in (".", {"context": "."})
