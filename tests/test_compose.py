"""docker-compose.yml, Dockerfile and .dockerignore, checked without Docker.

The compose file is validated against the official Compose Specification JSON schema, as
vendored (with its licence and checksum) by the `check-jsonschema` package, both as written and
after Compose-style variable interpolation. Then the things that matter to us: every member of
the suite (services/suite.py) runs with the right command and ports, dependencies exist and wait
for health, every container has a healthcheck, Redis keeps an append-only file, no secret is
written into a file, and the image runs the modules it names as an unprivileged user.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import json
import posixpath
import re
import shlex
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from services.suite import SUITE, SuiteMember

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"

BACKENDS = ("postgres", "redis")
REQUIRED_SECRETS = frozenset({"SYNCSUITE_ADMIN_TOKEN", "SYNCSUITE_JWT_SECRET", "SYNCSUITE_DATA_KEY",
                              "POSTGRES_PASSWORD"})
SECRET_NAME = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|PRIVATE_KEY|CREDENTIAL")
# A whole value that is one reference to a variable Compose must be given: ${NAME:?message}.
REQUIRED_REFERENCE = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*:?\?[^}]*\}")
# A whole value that is one reference with no value of its own: ${NAME} or ${NAME:-}.
BARE_REFERENCE = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*(?::?-)?\}")
URL_PASSWORD = re.compile(r"://[^/:@\s]+:(?P<password>[^@\s]+)@")
# Values for the variables the file requires; anything will do for a schema check.
TEST_ENVIRONMENT = {name: f"test-{name.lower()}" for name in REQUIRED_SECRETS}


# -- Compose-style interpolation ---------------------------------------------------------------

_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|(?P<named>[A-Za-z_][A-Za-z0-9_]*)"
    r"|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<operator>:?[-?+])(?P<argument>[^}]*))?\}"
    r"|(?P<invalid>))"
)


class InterpolationError(ValueError):
    def __init__(self, missing: set[str], invalid: list[str]) -> None:
        super().__init__(f"missing required variables {sorted(missing)}; invalid: {invalid}")
        self.missing = missing
        self.invalid = invalid


def _interpolate_string(
    text: str, environ: Mapping[str, str], missing: set[str], invalid: list[str]
) -> str:
    def replace(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        if match["invalid"] is not None:
            invalid.append(text)
            return ""
        name = match["named"] or match["braced"]
        operator, argument = match["operator"] or "", match["argument"] or ""
        value = environ.get(name)
        is_set = value is not None and (value != "" or not operator.startswith(":"))
        if operator.endswith("-"):
            return value if is_set else argument  # type: ignore[return-value]
        if operator.endswith("?"):
            if not is_set:
                missing.add(name)
            return value or ""
        if operator.endswith("+"):
            return argument if is_set else ""
        return value or ""

    return _VARIABLE.sub(replace, text)


def interpolate(document: Any, environ: Mapping[str, str]) -> Any:
    """Substitutes variables in every string value, as Compose does before it runs anything."""
    missing: set[str] = set()
    invalid: list[str] = []

    def walk(node: Any) -> Any:
        if isinstance(node, str):
            return _interpolate_string(node, environ, missing, invalid)
        if isinstance(node, list):
            return [walk(item) for item in node]
        if isinstance(node, dict):
            return {key: walk(value) for key, value in node.items()}
        return node

    result = walk(document)
    if missing or invalid:
        raise InterpolationError(missing, invalid)
    return result


# -- Loading -----------------------------------------------------------------------------------

@cache
def compose_text() -> str:
    return COMPOSE_FILE.read_text()


def compose() -> dict[str, Any]:
    """The file as Compose reads it before interpolation (anchors and `<<` merges resolved)."""
    return yaml.safe_load(compose_text())  # type: ignore[no-any-return]


def services() -> dict[str, dict[str, Any]]:
    return compose()["services"]  # type: ignore[no-any-return]


def interpolated_services() -> dict[str, dict[str, Any]]:
    return interpolate(compose(), TEST_ENVIRONMENT)["services"]  # type: ignore[no-any-return]


@cache
def compose_schema() -> dict[str, Any]:
    vendor = importlib.resources.files("check_jsonschema.builtin_schemas.vendor")
    raw = vendor.joinpath("compose-spec.json").read_bytes()
    expected = vendor.joinpath("sha256", "compose-spec.sha256").read_text().split()[0]
    assert hashlib.sha256(raw).hexdigest() == expected, "vendored compose schema is corrupt"
    schema: dict[str, Any] = json.loads(raw)
    assert schema["title"] == "Compose Specification"
    return schema


def schema_errors(document: Any) -> list[str]:
    schema = compose_schema()
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    validator = validator_class(schema)
    errors = sorted(validator.iter_errors(document), key=lambda error: list(error.path))
    return [f"{error.json_path}: {error.message[:300]}" for error in errors]


def sandbox_name(member: SuiteMember) -> str:
    return f"{member.upstream.lower()}-sandbox"


def sandbox_module(member: SuiteMember) -> str:
    return f"{member.module}.sandbox"


MEMBERS = list(SUITE)
UPSTREAM_MEMBERS = [member for member in SUITE if member.upstream]
APP_CONTAINERS = [member.name for member in MEMBERS] + [sandbox_name(m) for m in UPSTREAM_MEMBERS]


def environment(service: Mapping[str, Any]) -> dict[str, str]:
    """A service's environment as a mapping, whichever of the two spellings the file uses."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def depends_on(service: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return {name: {"condition": "service_started"} for name in deps}
    return deps  # type: ignore[no-any-return]


def published_ports(service: Mapping[str, Any]) -> list[tuple[str, int, int]]:
    """(host address, host port, container port) for each port in the short syntax."""
    result = []
    for entry in service.get("ports", []):
        spec = str(entry).split("/", 1)[0]
        host_ip, host_port, container_port = ["", "", *spec.rsplit(":", 2)][-3:]
        result.append((host_ip, int(host_port or container_port), int(container_port)))
    return result


def strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, list):
        for item in node:
            yield from strings(item)
    elif isinstance(node, dict):
        for value in node.values():
            yield from strings(value)


# -- The compose file against the Compose Specification ----------------------------------------

def test_compose_file_matches_the_compose_specification() -> None:
    assert schema_errors(compose()) == []


def test_interpolated_compose_file_matches_the_compose_specification() -> None:
    assert schema_errors(interpolate(compose(), TEST_ENVIRONMENT)) == []


def test_schema_check_rejects_what_compose_rejects() -> None:
    document = compose()
    document["services"]["catalog"]["healthchek"] = {"test": ["CMD", "true"]}
    document["services"]["redis"]["depends_on"] = {"postgres": {"condition": "when_ready"}}
    errors = schema_errors(document)
    assert any("healthchek" in error for error in errors), errors
    assert any("redis" in error for error in errors), errors


def test_uses_the_compose_specification_not_a_legacy_version() -> None:
    assert "version" not in compose(), "the top-level `version` key is obsolete: remove it"
    assert compose().get("name") == "syncsuite"


def test_shared_blocks_are_written_once() -> None:
    """The service environment and the gRPC healthcheck come from `x-` anchors, not copies."""
    document = compose()
    shared_environment = document["x-service-environment"]
    lines = [line for line in compose_text().splitlines() if not line.lstrip().startswith("#")]
    for key in [*shared_environment, "wait_for_health"]:
        written = [line for line in lines if re.search(rf"\b{key}\b", line)]
        assert len(written) == 1, f"{key} is written {len(written)} times: use the anchor"
    for member in MEMBERS:
        env = environment(services()[member.name])
        assert env.items() >= shared_environment.items(), member.name


# -- The suite's members -----------------------------------------------------------------------

def test_every_member_of_the_suite_and_nothing_else() -> None:
    expected = {*BACKENDS, *APP_CONTAINERS}
    assert set(services()) == expected


@pytest.mark.parametrize("member", MEMBERS, ids=lambda member: member.name)
def test_service_command_port_and_environment(member: SuiteMember) -> None:
    service = interpolated_services()[member.name]
    assert service["command"] == ["python", "-m", member.module]
    assert (ROOT / "services" / member.name / "__main__.py").is_file(), member.module
    env = environment(service)
    assert env["SYNCSUITE_GRPC_PORT"] == str(member.grpc_port)
    assert env["SYNCSUITE_HOST"] == "0.0.0.0"
    assert env["SYNCSUITE_LOG_FORMAT"] == "json"
    assert env["DATABASE_URL"].startswith("postgresql://")
    assert env["DATABASE_URL"].endswith("@postgres:5432/syncsuite")
    assert env["REDIS_URL"].startswith("redis://redis:6379")
    for other in MEMBERS:
        assert env[other.address_env] == f"{other.name}:{other.grpc_port}"
    for upstream in UPSTREAM_MEMBERS:
        url = f"http://{sandbox_name(upstream)}:{upstream.sandbox_port}"
        assert env[upstream.sandbox_url_env] == url
    ports = {container: host for _, host, container in published_ports(service)}
    assert ports.get(member.grpc_port) == member.grpc_port, "gRPC port is not published"
    assert ports.get(member.grpc_port + 1000) == member.grpc_port + 1000, "metrics port"


@pytest.mark.parametrize("member", UPSTREAM_MEMBERS, ids=lambda member: member.upstream)
def test_sandbox_command_and_port(member: SuiteMember) -> None:
    service = interpolated_services()[sandbox_name(member)]
    assert service["command"] == [
        "python", "-m", sandbox_module(member), "--host", "0.0.0.0",
        "--port", str(member.sandbox_port),
    ]
    # The sandbox module itself may still be in the making; its package must exist.
    assert (ROOT / "services" / member.name / "__init__.py").is_file()
    ports = {container: host for _, host, container in published_ports(service)}
    assert ports.get(member.sandbox_port) == member.sandbox_port
    assert str(member.sandbox_port) in " ".join(service["healthcheck"]["test"])
    assert sandbox_name(member) in depends_on(services()[member.name])


def test_ports_are_published_on_loopback_unless_asked_and_never_twice() -> None:
    seen: set[tuple[str, int]] = set()
    for name, service in interpolated_services().items():
        for host_ip, host_port, _ in published_ports(service):
            assert host_ip == "127.0.0.1", f"{name} publishes on {host_ip or 'every address'}"
            assert (host_ip, host_port) not in seen, f"{name}: host port {host_port} twice"
            seen.add((host_ip, host_port))
    for name in BACKENDS:
        assert not services()[name].get("ports"), f"{name} stays inside the project network"


def test_one_image_for_every_service_and_sandbox() -> None:
    app = {name: service for name, service in interpolated_services().items()
           if name in APP_CONTAINERS}
    assert {service["image"] for service in app.values()} == {"syncsuite:local"}
    for name, service in app.items():
        build = service["build"]
        assert build == {"context": ".", "dockerfile": "Dockerfile"}, name
    assert (ROOT / "Dockerfile").is_file()


# -- Dependencies and health -------------------------------------------------------------------

def test_dependencies_exist_wait_for_health_and_have_no_cycle() -> None:
    all_services = services()
    for name, service in all_services.items():
        for target, options in depends_on(service).items():
            assert target in all_services, f"{name} depends on unknown service {target}"
            assert options.get("condition") == "service_healthy", f"{name} -> {target}"
            assert "healthcheck" in all_services[target], f"{target} has no healthcheck"

    def visit(name: str, path: tuple[str, ...]) -> None:
        assert name not in path, f"dependency cycle: {' -> '.join((*path, name))}"
        for target in depends_on(all_services[name]):
            visit(target, (*path, name))

    for name in all_services:
        visit(name, ())


def test_each_service_waits_for_what_it_uses() -> None:
    for member in MEMBERS:
        deps = set(depends_on(services()[member.name]))
        assert deps >= set(BACKENDS), member.name
        if member.upstream:
            assert sandbox_name(member) in deps
    scheduler_deps = set(depends_on(services()["scheduler"]))
    assert scheduler_deps >= {member.name for member in MEMBERS if member.name != "scheduler"}


def _python_snippets(test: list[str]) -> Iterator[str]:
    for position, word in enumerate(test):
        if word == "-c" and position >= 1 and test[position - 1] == "python":
            yield test[position + 1]


def test_every_container_has_a_healthcheck() -> None:
    for name, service in services().items():
        check = service.get("healthcheck")
        assert check, f"{name} has no healthcheck"
        assert not check.get("disable"), name
        test = check["test"]
        assert isinstance(test, list) and test[0] in ("CMD", "CMD-SHELL"), name
        for snippet in _python_snippets(test):
            compile(snippet, f"<{name} healthcheck>", "exec")


@pytest.mark.parametrize("member", MEMBERS, ids=lambda member: member.name)
def test_services_use_the_grpc_health_check(member: SuiteMember) -> None:
    import shared.processes

    test = services()[member.name]["healthcheck"]["test"]
    snippet = "\n".join(_python_snippets(test))
    assert "wait_for_health" in snippet and "SYNCSUITE_GRPC_PORT" in snippet, test
    assert callable(shared.processes.wait_for_health)


def test_backends_are_checked_for_real_readiness() -> None:
    postgres = services()["postgres"]
    assert postgres["image"].split(":")[0] == "postgres"
    assert "pg_isready" in postgres["healthcheck"]["test"]
    assert any(volume.endswith(":/var/lib/postgresql/data") for volume in postgres["volumes"])
    redis = services()["redis"]
    assert redis["image"].split(":")[0] == "redis"
    assert any("redis-cli ping" in word for word in redis["healthcheck"]["test"])
    assert any(volume.endswith(":/data") for volume in redis["volumes"])
    declared = set(compose().get("volumes") or {})
    for name, service in services().items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if not source.startswith((".", "/")):
                assert source in declared, f"{name} mounts undeclared volume {source}"


def test_redis_keeps_an_append_only_file() -> None:
    command = services()["redis"]["command"]
    if isinstance(command, str):
        command = shlex.split(command)
    assert command[0] == "redis-server"
    options = dict(zip(command[1::2], command[2::2], strict=False))
    assert options.get("--appendonly") == "yes"
    assert options.get("--appendfsync") == "everysec"


# -- Secrets -----------------------------------------------------------------------------------

def test_required_secrets_must_be_given() -> None:
    with pytest.raises(InterpolationError) as raised:
        interpolate(compose(), {})
    assert raised.value.missing == REQUIRED_SECRETS
    assert raised.value.invalid == []


def test_no_secret_value_is_written_in_the_compose_file() -> None:
    for name, service in services().items():
        for key, value in environment(service).items():
            if SECRET_NAME.search(key):
                assert REQUIRED_REFERENCE.fullmatch(value) or BARE_REFERENCE.fullmatch(value), (
                    f"{name}: {key} must be a ${{VAR}} reference, not a value"
                )
        for key in service.get("build", {}).get("args", {}) or {}:
            assert not SECRET_NAME.search(key), f"{name}: build arg {key} would land in the image"
    for text in strings(compose()):
        for match in URL_PASSWORD.finditer(text):
            assert REQUIRED_REFERENCE.fullmatch(match["password"]), f"password in {text!r}"
    for secret in REQUIRED_SECRETS:
        assert re.search(rf"\$\{{{secret}:\?", compose_text()), f"{secret} is not required"


def test_interpolation_follows_compose_rules() -> None:
    document = {"a": "${A:-x}", "b": "${B-y}", "c": "$$C", "d": "${D:+set}", "e": "$E/f"}
    assert interpolate(document, {"A": "", "B": "", "D": "1", "E": "e"}) == {
        "a": "x", "b": "", "c": "$C", "d": "set", "e": "e/f",
    }
    with pytest.raises(InterpolationError) as raised:
        interpolate({"a": "${A:?need A}", "b": "${B?need B}", "c": "$ {C}"}, {"B": ""})
    assert raised.value.missing == {"A"}
    assert raised.value.invalid == ["$ {C}"]


# -- Dockerfile --------------------------------------------------------------------------------

def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw_line in DOCKERFILE.read_text().splitlines():
        line = raw_line.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        keyword, _, arguments = (pending + line).partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
        pending = ""
    assert not pending, "Dockerfile ends inside a continued line"
    return instructions


def stages() -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for instruction in dockerfile_instructions():
        if instruction[0] == "FROM":
            result.append([])
        assert result, "Dockerfile must start with FROM"
        result[-1].append(instruction)
    return result


def environment_assignments(arguments: str) -> dict[str, str]:
    words = shlex.split(arguments)
    if words and "=" not in words[0]:  # legacy form: ENV KEY value
        return {words[0]: " ".join(words[1:])}
    return dict(word.split("=", 1) for word in words)


def options_and_words(arguments: str) -> tuple[dict[str, str], list[str]]:
    words = shlex.split(arguments)
    options = {
        key: value for key, _, value in (word[2:].partition("=") for word in words
                                         if word.startswith("--"))
    }
    return options, [word for word in words if not word.startswith("--")]


def test_dockerfile_is_multi_stage_on_python_311_slim() -> None:
    froms = [args.split() for stage in stages() for keyword, args in stage if keyword == "FROM"]
    assert len(froms) >= 2
    names: set[str] = set()
    for words in froms:
        image = words[0]
        assert image in names or image == "python:3.11-slim", f"unexpected base image {image}"
        if len(words) == 3 and words[1].upper() == "AS":
            names.add(words[2])


def test_final_stage_runs_unprivileged_from_copied_venv_and_generated_code() -> None:
    final = stages()[-1]
    env: dict[str, str] = {}
    for keyword, arguments in final:
        if keyword == "ENV":
            env.update(environment_assignments(arguments))
    users = [arguments for keyword, arguments in final if keyword == "USER"]
    assert users, "the final stage has no USER"
    assert users[-1].split(":")[0] not in ("root", "0")
    assert {"/app", "/app/gen"} <= set(env["PYTHONPATH"].split(":"))
    assert env["SYNCSUITE_HOST"] == "0.0.0.0"
    assert env["SYNCSUITE_LOG_FORMAT"] == "json"
    for keyword, arguments in final:
        assert not (keyword == "RUN" and "pip install" in arguments), "install in a builder stage"
    copied_from_stages = [
        options_and_words(arguments)[1][0] for keyword, arguments in final
        if keyword == "COPY" and "from" in options_and_words(arguments)[0]
    ]
    assert "/opt/venv" in copied_from_stages
    assert any(source.endswith("/gen") for source in copied_from_stages)
    all_runs = " ".join(args for stage in stages()[:-1] for keyword, args in stage
                        if keyword == "RUN")
    for flag in ("grpc_tools.protoc", "--python_out=gen", "--grpc_python_out=gen"):
        assert flag in all_runs, f"code generation misses {flag}"


def test_dockerfile_commands_run_existing_service_modules() -> None:
    final = stages()[-1]
    command: list[str] = []
    for keyword in ("ENTRYPOINT", "CMD"):
        forms = [arguments for name, arguments in final if name == keyword]
        if forms:
            value = json.loads(forms[-1])
            assert isinstance(value, list), f"{keyword} must use the exec (JSON) form"
            command += value
    assert command, "the image has neither CMD nor ENTRYPOINT"
    modules = [command[i + 1] for i, word in enumerate(command[:-1]) if word == "-m"]
    assert modules, command
    for module in modules:
        parts = module.split(".")
        assert len(parts) == 2 and parts[0] == "services", module
        assert (ROOT / "services" / parts[1] / "__main__.py").is_file(), module


def test_dockerfile_bakes_in_no_secret() -> None:
    for keyword, arguments in dockerfile_instructions():
        if keyword == "ENV":
            keys = list(environment_assignments(arguments))
        elif keyword == "ARG":
            keys = [arguments.split("=", 1)[0]]
        else:
            continue
        for key in keys:
            assert not SECRET_NAME.search(key), f"{keyword} {key} would be stored in the image"


# -- Build context -----------------------------------------------------------------------------

def _pattern(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern (Go filepath.Match plus `**`) as a regular expression."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[" and "]" in pattern[i:]:
            end = pattern.index("]", i)
            out, i = out + "[" + pattern[i + 1:end].replace("!", "^", 1) + "]", end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


@cache
def _dockerignore_rules() -> tuple[tuple[bool, re.Pattern[str]], ...]:
    rules = []
    for raw_line in DOCKERIGNORE.read_text().splitlines():
        line = raw_line.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = posixpath.normpath(line.lstrip("!").strip().lstrip("/"))
        rules.append((negated, _pattern(pattern)))
    return tuple(rules)


def in_build_context(path: str) -> bool:
    """Whether Docker sends ``path`` to the builder: the last matching rule decides, and a rule
    that matches a directory matches everything under it."""
    parts = path.split("/")
    prefixes = ["/".join(parts[:count]) for count in range(1, len(parts) + 1)]
    included = True
    for negated, regex in _dockerignore_rules():
        if any(regex.fullmatch(prefix) for prefix in prefixes):
            included = negated
    return included


def context_sources() -> list[str]:
    sources = []
    for stage in stages():
        for keyword, arguments in stage:
            if keyword in ("COPY", "ADD"):
                options, words = options_and_words(arguments)
                if "from" not in options:
                    sources += words[:-1]
    return sources


def test_build_context_holds_what_the_dockerfile_copies() -> None:
    for source in context_sources():
        assert (ROOT / source).exists(), f"COPY {source}: no such file"
        assert in_build_context(source), f"COPY {source}: left out by .dockerignore"
        if (ROOT / source).is_dir():
            for path in (ROOT / source).rglob("*"):
                relative = path.relative_to(ROOT).as_posix()
                if path.is_file() and "__pycache__" not in path.parts:
                    assert in_build_context(relative), relative


@pytest.mark.parametrize("path", [
    ".venv/bin/python", ".run/postgres/PG_VERSION", "gen/syncsuite/sync/v1/sync_pb2.py",
    ".git/HEAD", "bench/results/latest.json", ".env", "vendor-credentials.env",
    "services/catalog/__pycache__/server.cpython-311.pyc", "shared/.env",
    "tests/conftest.py", "syncsuite.egg-info/PKG-INFO", ".pytest_cache/v/cache/nodeids",
])
def test_build_context_leaves_out_local_state_and_secrets(path: str) -> None:
    assert not in_build_context(path)


def test_dockerignore_matcher() -> None:
    def match(pattern: str, path: str) -> bool:
        return bool(_pattern(pattern).fullmatch(path))

    assert match("**/__pycache__", "__pycache__")
    assert match("**/__pycache__", "a/b/__pycache__")
    assert match("*", "services") and not match("*", "services/x")
    assert match("**/*.py[cod]", "a/b.pyc") and not match("**/*.py[cod]", "a/b.py")
