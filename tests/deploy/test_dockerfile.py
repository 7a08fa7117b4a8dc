"""deploy/Dockerfile: the one file the image of every service is built from.

Nothing here needs a Docker engine. The file is parsed, and for each service its build
arguments are substituted where BuildKit substitutes them, giving the instructions that
build that service's image. Each is checked as if it were a Dockerfile of its own: it
copies only the service and the libraries, installs only the service and the libraries
it depends on (never another service), pins everything through the lock,
runs as a non-root user, listens beyond loopback, exposes the service's port and starts
the service's console script. The step that rejects a bad SERVICE or PORT and the health
check are run for real, and the rooms and gateway builds are replayed with the
Dockerfile's own commands.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from .test_manifests import DUMMY_SECRET, GATEWAY, ROOT, SERVICES, Doc, Service, _image_name

DOCKERFILE = ROOT / "deploy/Dockerfile"
BASE_IMAGE = "python:3.11-slim"
#: Where pip puts console scripts in the base image (its Python lives in /usr/local).
SCRIPTS = "/usr/local/bin"
#: The instructions BuildKit expands variables in; RUN gets build arguments as
#: environment variables instead, and ENTRYPOINT, CMD and HEALTHCHECK get nothing.
EXPANDED = {"ADD", "COPY", "ENV", "EXPOSE", "FROM", "LABEL", "STOPSIGNAL", "USER", "WORKDIR"}
UNEXPANDED = {"CMD", "ENTRYPOINT", "HEALTHCHECK"}
_VARIABLE = re.compile(r"\$(?:\{(\w+)\}|(\w+))")


def _build_args(service: Service) -> dict[str, str]:
    """The build arguments of ``service``'s image (as docker-compose.yml passes them)."""
    return {"SERVICE": service.name, "PORT": str(service.default_port)}


# --------------------------------------------------------------------- parsing --


@dataclass(frozen=True)
class Instruction:
    keyword: str
    flags: tuple[str, ...]  # --from=..., --mount=..., --interval=...
    args: str


Stage = tuple[Instruction, ...]


@cache
def _parse_dockerfile(path: Path) -> tuple[Stage, ...]:
    """The instructions of each build stage (comments and continuations resolved)."""
    logical: list[str] = []
    pending = ""
    for line in path.read_text().splitlines():
        if line.lstrip().startswith("#") or (not line.strip() and not pending):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, f"{path}: dangling line continuation"
    stages: list[list[Instruction]] = []
    for text in logical:
        keyword, _, rest = text.strip().partition(" ")
        flags = []
        rest = rest.strip()
        while rest.startswith("--"):
            flag, _, rest = rest.partition(" ")
            flags.append(flag)
            rest = rest.strip()
        instruction = Instruction(keyword.upper(), tuple(flags), rest)
        if instruction.keyword == "FROM":
            stages.append([])
        assert stages, f"{path}: instruction before FROM (global ARGs are not expected)"
        stages[-1].append(instruction)
    return tuple(tuple(stage) for stage in stages)


def _expand(text: str, values: Mapping[str, str]) -> str:
    """``$NAME`` and ``${NAME}`` replaced where NAME has a value; the rest left as is."""
    return _VARIABLE.sub(lambda m: values.get(m.group(1) or m.group(2), m.group(0)), text)


@cache
def _image(service: Service) -> tuple[Stage, ...]:
    """The instructions that build ``service``'s image, its build arguments substituted.

    An ARG is in scope from its declaration to the end of its stage, as in BuildKit. RUN
    lines are substituted too: their shell would expand the same variables the same way.
    """
    build_args = _build_args(service)
    stages = []
    for stage in _parse_dockerfile(DOCKERFILE):
        declared: dict[str, str] = {}
        built = []
        for instruction in stage:
            if instruction.keyword == "ARG":
                name, _, default = instruction.args.partition("=")
                declared[name] = build_args.get(name, default)
            elif instruction.keyword in EXPANDED or instruction.keyword == "RUN":
                instruction = replace(instruction, args=_expand(instruction.args, declared))
            built.append(instruction)
        stages.append(tuple(built))
    return tuple(stages)


def _simple_commands(instruction: Instruction) -> Iterator[list[str]]:
    """A RUN line's commands, split at ``&&``."""
    command: list[str] = []
    for token in shlex.split(instruction.args):
        if token == "&&":
            yield command
            command = []
        else:
            command.append(token)
    yield command


def _command(stage: Stage, *prefix: str) -> tuple[Instruction, list[str]]:
    """The one command of the stage's RUN lines that starts with ``prefix``, and its RUN."""
    found = [
        (instruction, command)
        for instruction in stage
        if instruction.keyword == "RUN"
        for command in _simple_commands(instruction)
        if command[: len(prefix)] == list(prefix)
    ]
    assert len(found) == 1, f"expected one `{' '.join(prefix)}`, found {len(found)}"
    return found[0]


def _links(stage: Stage) -> dict[str, str]:
    """``ln -s TARGET LINK`` in the stage's RUN lines: LINK -> TARGET."""
    return {
        command[-1]: command[-2]
        for instruction in stage
        if instruction.keyword == "RUN"
        for command in _simple_commands(instruction)
        if command[:2] == ["ln", "-s"]
    }


def _env(stage: Stage) -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction in stage:
        if instruction.keyword == "ENV":
            env |= dict(token.split("=", 1) for token in shlex.split(instruction.args))
    return env


def _pyproject(directory: Path) -> Doc:
    doc: Doc = tomllib.loads((directory / "pyproject.toml").read_text())
    return doc


@cache
def _workspace() -> dict[str, str]:
    """Distribution name -> the member's directory, relative to the root."""
    members = [*ROOT.glob("libs/*/pyproject.toml"), *ROOT.glob("services/*/pyproject.toml")]
    return {
        canonicalize_name(_pyproject(p.parent)["project"]["name"]): str(p.parent.relative_to(ROOT))
        for p in members
    }


def _closure(directory: str) -> set[str]:
    """The member at ``directory`` and every member it depends on (extras not followed)."""
    found = {directory}
    todo = [directory]
    while todo:
        for dependency in _pyproject(ROOT / todo.pop())["project"].get("dependencies", []):
            member = _workspace().get(canonicalize_name(Requirement(dependency).name))
            if member is not None and member not in found:
                found.add(member)
                todo.append(member)
    return found


def _libraries() -> set[str]:
    """Every library of the workspace (``libs/...``)."""
    return {member for member in _workspace().values() if member.startswith("libs/")}


def _distributions(members: set[str]) -> set[str]:
    """The distribution names of the workspace members at ``members``."""
    return {name for name, member in _workspace().items() if member in members}


def _members_in(paths: set[str]) -> set[str]:
    """The workspace members that a COPY of ``paths`` brings into the build."""
    return {
        member
        for member in _workspace().values()
        for path in paths
        if member == path or member.startswith(path + "/")
    }


# ---------------------------------------------------------------- the images --

by_service = pytest.mark.parametrize("service", list(SERVICES.values()), ids=lambda s: s.name)


@by_service
def test_each_image_copies_and_installs_only_its_service_and_libraries(service: Service) -> None:
    stages = _image(service)
    assert len(stages) >= 2, "multi-stage: wheels are built in a builder stage"
    assert all(stage[0].args.split()[0] == BASE_IMAGE for stage in stages)
    for instruction in (i for stage in stages for i in stage):
        if instruction.keyword in EXPANDED:
            assert "$" not in instruction.args, f"not a declared build argument: {instruction}"
        if instruction.keyword in UNEXPANDED:
            assert "$" not in instruction.args, f"{instruction.keyword} expands nothing"
    builder, runtime = stages[0], stages[-1]

    copied = {
        shlex.split(i.args)[0].rstrip("/")
        for stage in stages
        for i in stage
        if i.keyword in ("COPY", "ADD") and not any(f.startswith("--from") for f in i.flags)
    }
    assert "requirements.lock" in copied
    sources = copied - {"requirements.lock"}
    assert all(_members_in({path}) for path in sources), f"not packages: {sorted(sources)}"
    # Every library and this service: no other service is copied, and none is needed.
    own = f"services/{service.name}"
    members = _closure(own)
    assert {m for m in members if not m.startswith("libs/")} == {own}
    assert _members_in(sources) == _libraries() | {own}
    assert not any(i.keyword in ("COPY", "ADD") and "--from" not in str(i.flags) for i in runtime)

    _, wheel = _command(builder, "pip", "wheel")
    assert "--constraint" in wheel
    # A wheel of every library; the install below takes only those the service needs.
    assert {a.removeprefix("./") for a in wheel if a.startswith("./")} == _libraries() | {own}
    install_run, install = _command(runtime, "pip", "install")
    assert {"--no-index", "--constraint"} <= set(install)
    assert any("type=bind" in f and "from=builder" in f for f in install_run.flags)
    # Named without extras: what it installs is the closure of its `dependencies`.
    requirement = Requirement(install[-1])
    assert canonicalize_name(requirement.name) == service.image and not requirement.extras


@by_service
def test_each_image_runs_its_console_script_as_a_non_root_user(service: Service) -> None:
    runtime = _image(service)[-1]
    users = [i.args for i in runtime if i.keyword == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert all(part.isdigit() for part in users[-1].split(":")), "numeric, for runAsNonRoot"

    # Exec form, no arguments, and its one word a link made next to the scripts pip
    # installed, in the same RUN, to the service's own console script.
    (entrypoint,) = [json.loads(i.args) for i in runtime if i.keyword == "ENTRYPOINT"]
    assert len(entrypoint) == 1 and "/" not in entrypoint[0]
    install_run, _ = _command(runtime, "pip", "install")
    link = f"{SCRIPTS}/{entrypoint[0]}"
    target = _links((install_run,)).get(link, entrypoint[0])
    scripts = _pyproject(service.directory)["project"]["scripts"]
    assert os.path.basename(target) == service.image and service.image in scripts
    assert [i.args for i in runtime if i.keyword == "STOPSIGNAL"] == ["SIGTERM"]


@by_service
def test_each_image_listens_beyond_loopback_on_its_port(service: Service) -> None:
    runtime = _image(service)[-1]
    env = _env(runtime)
    assert env["PYTHONUNBUFFERED"] == "1"
    assert env[service.host_env] == "0.0.0.0"
    chat = {k: v for k, v in env.items() if k.startswith("CHAT_")}
    every_setting = set().union(*(s.env_names for s in SERVICES.values()))
    assert set(chat) <= every_setting, "a CHAT_* variable no service reads"
    service.check_env({k: v for k, v in chat.items() if k in service.env_names})
    # The others' variables (CHAT_HOST in rooms, ...) must be ignored, not refused.
    secret = {"CHAT_JWT_SECRET": DUMMY_SECRET} if service is GATEWAY else {}
    service.settings.load_settings(chat | secret)
    assert int(env.get(service.port_env, service.default_port)) == service.default_port
    (expose,) = [i.args for i in runtime if i.keyword == "EXPOSE"]
    assert expose.split() == [str(service.default_port)]


def _healthcheck(service: Service) -> tuple[str, str]:
    """The health check's Python code, and the link it reads to find the service."""
    runtime = _image(service)[-1]
    (healthcheck,) = [i for i in runtime if i.keyword == "HEALTHCHECK"]
    command = json.loads(healthcheck.args.removeprefix("CMD").strip())
    assert command[:2] == ["python", "-c"] and "/healthz" in command[2]
    (link,) = (link for link in _links(runtime) if link in command[2])
    return command[2], link


@by_service
def test_the_health_check_asks_the_port_the_service_binds(service: Service, tmp_path: Path) -> None:
    code, link = _healthcheck(service)
    target = _links(_image(service)[-1])[link]
    (tmp_path / "chat-service").symlink_to(target)  # readlink only: it may dangle here
    code = code.replace(link, str(tmp_path / "chat-service"))
    probe = "import os, urllib.request as r; r.urlopen = lambda url, timeout: print(url)\n"
    secret = {"CHAT_JWT_SECRET": DUMMY_SECRET} if service is GATEWAY else {}

    def asked(env: dict[str, str]) -> str:
        result = subprocess.run(
            [sys.executable, "-c", probe + code],
            env={"PATH": os.environ.get("PATH", ""), **_env(_image(service)[-1]), **env},
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    assert asked(secret) == f"http://127.0.0.1:{service.default_port}/healthz"
    assert asked({**secret, service.port_env: "18080"}) == "http://127.0.0.1:18080/healthz"


def test_the_build_first_rejects_an_unknown_service_or_a_wrong_port() -> None:
    builder = _parse_dockerfile(DOCKERFILE)[0]
    first = next(i for i in builder if i.keyword not in ("FROM", "ARG"))
    assert first.keyword == "RUN", "the check must come before anything is copied or built"

    def check(**build_args: str) -> subprocess.CompletedProcess[str]:
        # RUN is `/bin/sh -c`, with the build arguments in its environment.
        return subprocess.run(
            ["sh", "-c", first.args],
            env={"PATH": os.environ.get("PATH", ""), **build_args},
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )

    for service in SERVICES.values():
        assert check(**_build_args(service)).returncode == 0, service.name
        for port in ("", "80", *(str(s.default_port) for s in SERVICES.values())):
            if port != str(service.default_port):
                result = check(SERVICE=service.name, PORT=port)
                assert result.returncode != 0
                assert f"--build-arg PORT={service.default_port}" in result.stderr
    for bad in ({}, {"SERVICE": ""}, {"SERVICE": "chat-rooms"}, {"SERVICE": "launcher"}):
        result = check(**bad, PORT="9101")
        assert result.returncode != 0
        assert "SERVICE must be" in result.stderr
        assert all(s.name in result.stderr for s in SERVICES.values())


def test_documented_build_commands_pass_each_service_its_own_arguments() -> None:
    tags = set()
    for path in (DOCKERFILE, ROOT / "deploy/README.md"):
        for line in re.findall(r"docker build -f deploy/Dockerfile .*", path.read_text()):
            words = shlex.split(line)
            build_args = dict(
                words[i + 1].split("=", 1) for i, w in enumerate(words) if w == "--build-arg"
            )
            tag = words[words.index("-t") + 1]
            assert build_args == _build_args(SERVICES[_image_name(tag)]), line
            assert words[-1] == ".", "the context is the repository root"
            tags.add((path.name, tag))
    assert tags == {(p, f"{s}:0.1.0") for p in ("Dockerfile", "README.md") for s in SERVICES}


# ---------------------------------------------------------------- .dockerignore --


def _glob_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as a regex (Go's filepath.Match plus ``**``)."""
    parts = []
    for token in re.split(r"(\*\*/|\*\*|\*|\?|\[[^\]]*\])", pattern):
        if token == "**/":
            parts.append("(.*/)?")
        elif token == "**":
            parts.append(".*")
        elif token == "*":
            parts.append("[^/]*")
        elif token == "?":
            parts.append("[^/]")
        elif token.startswith("[") and token.endswith("]"):
            parts.append(token)
        else:
            parts.append(re.escape(token))
    return re.compile("".join(parts) + r"\Z")


@cache
def _dockerignore() -> tuple[tuple[bool, re.Pattern[str]], ...]:
    rules = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            negate = line.startswith("!")
            rules.append((negate, _glob_regex(line.lstrip("!").strip("/"))))
    return tuple(rules)


def _ignored(relative: str) -> bool:
    """Docker's rule: the last pattern matching the path or a parent decides."""
    parts = relative.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for negate, regex in _dockerignore():
        if any(regex.match(prefix) for prefix in prefixes):
            ignored = not negate
    return ignored


@pytest.mark.parametrize(
    ("path", "ignored"),
    [
        (".venv/bin/python", True),
        (".git/HEAD", True),
        (".data/nats/jetstream", True),
        ("tests/system/cluster.py", True),
        ("services/rooms/tests/unit/test_x.py", True),
        ("libs/runtime/src/chat_runtime/__pycache__/ops.cpython-311.pyc", True),
        ("services/gateway/.mypy_cache/x", True),
        ("services/rooms/src/chat_rooms/stale.pyc", True),
        ("deploy/Dockerfile", True),
        ("node_modules/x/index.js", True),
        ("docs/architecture.md", True),
        ("requirements.lock", False),
        ("libs/pachinko/README.md", False),
        ("libs/pachinko/pyproject.toml", False),
        ("services/rooms/src/chat_rooms/__main__.py", False),
        ("services/gateway/src/chat_gateway/static/index.html", False),
    ],
)
def test_dockerignore_keeps_only_what_the_images_need(path: str, ignored: bool) -> None:
    assert _ignored(path) is ignored


# ------------------------------------------------------ the build, without Docker --

#: Signs that pip could not reach the package index at all (no network), as opposed
#: to a genuine failure such as a pin that does not exist.
_OFFLINE = (
    "NewConnectionError",
    "ConnectTimeoutError",
    "Temporary failure in name resolution",
    "Name or service not known",
    "Network is unreachable",
    "ProxyError",
)


def _lock_pins() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        name, sep, version = line.partition("==")
        if sep:
            pins[canonicalize_name(name)] = version.strip()
    return pins


def _copy_into(source: str, destination: Path) -> None:
    """``COPY source destination`` from the build context, honouring .dockerignore."""
    origin = ROOT / source
    if origin.is_file():
        target = (
            destination / origin.name
            if source.endswith("/") or destination.is_dir()
            else destination
        )
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(origin, target)
        return
    for path in origin.rglob("*"):
        relative = path.relative_to(ROOT).as_posix()
        if path.is_file() and not _ignored(relative):
            target = destination / path.relative_to(origin)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)


class _Emulator:
    """Replays a Dockerfile's COPY and RUN steps in a directory standing in for ``/``.

    ``paths`` maps image paths elsewhere, e.g. the scripts directory to a venv's bin/.
    """

    def __init__(self, fs: Path, build_args: Mapping[str, str]) -> None:
        self.fs = fs
        self.workdir = fs
        fs.mkdir(parents=True, exist_ok=True)
        self.roots: set[str] = set()
        self.build_args = build_args

    def host(self, container_path: str) -> Path:
        if container_path.startswith("/"):
            return self.fs / container_path.lstrip("/")
        return self.workdir / container_path

    def rewrite(self, command: str, python: str, mounts: dict[str, str]) -> str:
        for target, source in mounts.items():
            command = re.sub(rf"(?<![\w./-]){re.escape(target)}(?=[/\s]|$)", source, command)
        # `pip` as a command (not inside a path such as /root/.cache/pip).
        return re.sub(r"(?<![\w./-])pip(?=\s)", f"{shlex.quote(python)} -m pip", command)

    def run(
        self,
        stage: Stage,
        python: str,
        only_pip: bool = False,
        paths: Mapping[str, Path] | None = None,
    ) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CHAT_")}
        for instruction in stage:
            if instruction.keyword == "ARG":
                # RUN sees a declared build argument as an environment variable.
                name, _, default = instruction.args.partition("=")
                env[name] = self.build_args.get(name, default)
            elif instruction.keyword == "WORKDIR":
                self.roots.add(instruction.args)
                self.workdir = self.host(instruction.args)
                self.workdir.mkdir(parents=True, exist_ok=True)
            elif instruction.keyword == "ENV":
                env |= _env((instruction,))
            elif instruction.keyword == "COPY":
                source, destination = shlex.split(instruction.args)
                _copy_into(source, self.host(destination))
            elif instruction.keyword == "RUN" and (not only_pip or "pip " in instruction.args):
                self._run(instruction, python, env, paths or {})

    def _run(
        self, instruction: Instruction, python: str, env: dict[str, str], paths: Mapping[str, Path]
    ) -> None:
        mounts = {target: str(path) for target, path in paths.items()}
        for flag in instruction.flags:
            options = dict(o.split("=", 1) for o in flag.removeprefix("--mount=").split(","))
            if options.get("type") == "bind":
                mounts[options["target"]] = str(self.host(options["source"]))
        # The stage's own directories (WORKDIR, --wheel-dir) live under self.fs too.
        for path in self.roots | set(re.findall(r"--wheel-dir\s+(/\S+)", instruction.args)):
            mounts.setdefault(path, str(self.host(path)))
        command = self.rewrite(instruction.args, python, mounts)
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", command],
            cwd=self.workdir,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if result.returncode != 0 and any(sign in result.stderr for sign in _OFFLINE):
            pytest.skip("the package index is unreachable; the image build needs it")
        assert result.returncode == 0, f"RUN {instruction.args}\n{result.stderr[-4000:]}"


class _Healthz(http.server.BaseHTTPRequestHandler):
    """Answers 200 on /healthz only, like a live service."""

    def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
        self.send_response(200 if self.path == "/healthz" else 404)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.parametrize("service", [SERVICES["chat-rooms"], GATEWAY], ids=lambda s: s.name)
def test_image_build_replays_with_its_own_commands(service: Service, tmp_path: Path) -> None:
    """Replay deploy/Dockerfile: wheels in a builder, an offline install, a run."""
    builder, *_, runtime = _image(service)
    emulator = _Emulator(tmp_path / "fs", _build_args(service))
    emulator.run(builder, sys.executable)
    wheels = tmp_path / "fs/wheels"
    assert (wheels / "constraints.txt").is_file()
    module = service.image.replace("-", "_")
    assert any(wheels.glob(f"{module}-*.whl"))
    for other in set(SERVICES) - {service.image}:
        assert not any(wheels.glob(f"{other.replace('-', '_')}-*.whl")), other

    venv = tmp_path / "venv"
    base_python = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base_python, "-m", "venv", str(venv)], check=True, timeout=120)
    python = str(venv / "bin/python")
    emulator.run(runtime, python, only_pip=True, paths={SCRIPTS: venv / "bin"})

    listed = subprocess.run(
        [python, "-m", "pip", "list", "--format", "json"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    installed = {canonicalize_name(d["name"]): d["version"] for d in json.loads(listed.stdout)}
    ours = _distributions(_closure(f"services/{service.name}"))
    assert {service.image, "chat-runtime", "chat-protocol", "falcon-pachinko"} <= ours
    assert ours <= set(installed)
    unwanted = (set(SERVICES) - {service.image}) | {"pytest", "ruff", "mypy", "hypothesis"}
    unwanted |= _distributions(_libraries()) - ours  # built as wheels, not needed
    if service is not GATEWAY:
        unwanted.add("pyjwt")  # the gateway's alone
    assert not unwanted & set(installed)
    pins = _lock_pins()
    for name, version in installed.items():
        if name not in ours and name not in ("pip", "setuptools", "wheel"):
            assert pins.get(name) == version, f"{name} {version} is not the locked version"
    if service is GATEWAY:
        # It imports (announcement worker included) without the announcer service.
        subprocess.run([python, "-c", "import chat_gateway.app"], check=True, timeout=60)
        absent = subprocess.run(
            [python, "-c", "import chat_announcer"], capture_output=True, text=True, timeout=60
        )
        assert absent.returncode == 1 and "ModuleNotFoundError" in absent.stderr

    # The ENTRYPOINT, through the link the install made, is the service's script.
    (entrypoint,) = [json.loads(i.args) for i in runtime if i.keyword == "ENTRYPOINT"]
    executable = venv / "bin" / entrypoint[0]
    assert executable.is_symlink() and executable.resolve().name == service.image
    env = {"PATH": os.environ.get("PATH", ""), service.port_env: "soon"}
    result = subprocess.run(
        [str(executable)], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"{service.image}: invalid configuration: {service.port_env}")

    # The health check, with only the image's packages, against a live /healthz.
    code, link = _healthcheck(service)
    server = http.server.HTTPServer(("127.0.0.1", 0), _Healthz)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = str(server.server_address[1])
        env = {"PATH": os.environ.get("PATH", ""), **_env(runtime), service.port_env: port}
        if service is GATEWAY:
            env["CHAT_JWT_SECRET"] = DUMMY_SECRET
        result = subprocess.run(
            [python, "-c", code.replace(link, str(executable))],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert result.returncode == 0, result.stderr
    finally:
        server.shutdown()
        server.server_close()
