"""What can be checked about the Dockerfile without building it (no Docker here): it runs
the console script the package declares, as a non-root user, from a pinned Debian bookworm
base, it describes the image `make image` builds (hack/image/build.py: same packages, venv,
user, entrypoint, environment), and it agrees with what the Helm chart expects of the image."""
from __future__ import annotations

import fnmatch
import importlib.util
import json
import re
import tomllib
from pathlib import Path

import yaml

from certmint import cli

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "certmint"


def image_build():
    """hack/image/build.py as a module: its constants say what `make image` puts in the image."""
    spec = importlib.util.spec_from_file_location("certmint_image_build", REPO / "hack" / "image" / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, with line continuations joined and comments dropped."""
    lines, current = [], ""
    for raw in (REPO / "Dockerfile").read_text().splitlines():
        stripped = raw.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):  # a comment inside a continued instruction
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        lines.append(current + stripped)
        current = ""
    out = []
    for line in lines:
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def stages() -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for instruction in instructions():
        if instruction[0] == "FROM":
            result.append([])
        if result:
            result[-1].append(instruction)
    return result


def global_args() -> dict[str, str]:
    args = {}
    for word, rest in instructions():
        if word == "FROM":
            break
        if word == "ARG" and "=" in rest:
            name, value = rest.split("=", 1)
            args[name] = value.strip('"')
    return args


def final_stage() -> list[tuple[str, str]]:
    return stages()[-1]


def exec_form(stage, word) -> list[str]:
    found = [rest for w, rest in stage if w == word]
    assert found, f"the final stage has no {word}"
    value = json.loads(found[-1])  # exec form: a JSON array, no shell in between (signals reach certmint)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), f"{word} must be in exec form"
    return value


def base_images() -> list[str]:
    args = global_args()
    images = []
    for stage in stages():
        image = stage[0][1].split()[0]
        image = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), image)
        images.append(image)
    return images


def pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def values() -> dict:
    return yaml.safe_load((CHART / "values.yaml").read_text())


def test_entrypoint_is_the_console_script_and_cmd_the_operator():
    scripts = pyproject()["project"]["scripts"]
    entrypoint = exec_form(final_stage(), "ENTRYPOINT")
    assert entrypoint == ["certmint"]
    assert scripts.get("certmint") == "certmint.cli:main", "the image's entrypoint is the package's console script"
    cmd = exec_form(final_stage(), "CMD")
    assert cmd == ["operator"]
    args = cli.parser().parse_args(cmd)  # the default command is one the CLI accepts
    assert args.command == "operator"


def test_runs_as_non_root_user_65532():
    users = [rest for word, rest in final_stage() if word == "USER"]
    assert users, "the final stage must set USER (the default is root)"
    user, _, group = users[-1].partition(":")
    assert user == "65532" and group in ("", "65532"), "numeric, so runAsNonRoot can verify it"
    pod = (CHART / "templates" / "deployment.yaml").read_text()
    assert "runAsUser: 65532" in pod and "runAsNonRoot: true" in pod


def test_base_images_are_pinned_debian_bookworm():
    """The image's Python is Debian bookworm's 3.11 in both builds, from a point-release tag."""
    images = base_images()
    assert len(images) >= 2, "a builder stage and a final stage"
    assert len(set(images)) == 1, "the builder makes the venv for the final stage's Python: the same base"
    for image in images:
        assert "$" not in image, f"unresolved build argument in FROM {image}"
        name, _, tag = image.partition(":")
        assert name in ("debian", "docker.io/library/debian"), image
        assert re.fullmatch(r"12\.\d+-slim", tag), f"{image}: pin a bookworm point release (12.N-slim), not {tag}"
    assert image_build().SUITE == "bookworm"
    assert pyproject()["project"]["requires-python"] == ">=3.11"


def run_commands(stage) -> str:
    """The stage's RUN commands, whitespace collapsed (continuations leave double spaces)."""
    return "\n".join(" ".join(rest.split()) for w, rest in stage if w == "RUN")


def test_wheel_is_built_in_a_builder_stage_and_only_the_venv_reaches_the_final_stage():
    builder, final = stages()[0], final_stage()
    assert re.search(r"\bAS builder\b", builder[0][1], re.IGNORECASE)
    assert re.search(r"pip wheel --no-deps", run_commands(builder))
    copies = [rest for w, rest in final if w == "COPY"]
    venv = image_build().VENV
    assert copies == [f"--from=builder {venv} {venv}"], "only the venv: no sources, no wheels, no build tools"


def test_dockerfile_describes_the_image_make_image_builds():
    build = image_build()
    builder, final = stages()[0], final_stage()
    # The same runtime packages from Debian.
    installs = re.findall(r"apt-get install -y --no-install-recommends\s+([^&]+)", run_commands(final))
    assert len(installs) == 1 and set(installs[0].split()) == set(build.packages())
    # The same venv, filled from the same hashed locks, without deps resolution, pip or setuptools.
    steps = run_commands(builder)
    assert f"python3 -m venv --without-pip {build.VENV}" in steps
    assert re.search(rf"--python {build.VENV}/bin/python install --no-compile --no-deps --require-hashes\s+"
                     r"-r requirements-operator.lock", steps)
    assert "--require-hashes --no-deps -r build.lock" in steps
    copied = [rest.split()[0] for w, rest in builder if w == "COPY"]
    assert "hack/image/build.lock" in copied and "requirements-operator.lock" in " ".join(
        rest for w, rest in builder if w == "COPY")
    # The same bytecode: unchecked hashes, kubernetes.aio left out.
    assert "--invalidation-mode unchecked-hash" in steps and "-x /site-packages/kubernetes/aio/" in steps
    # The same user, with the same passwd entry.
    useradd = run_commands(final)
    assert f"groupadd --gid {build.GID} {build.USER_NAME}" in useradd
    assert (f"useradd --uid {build.UID} --gid {build.GID} --home-dir /nonexistent --no-create-home "
            f"--shell /usr/sbin/nologin {build.USER_NAME}") in useradd
    assert [rest for w, rest in final if w == "USER"] == [f"{build.UID}:{build.GID}"]
    # The same process: entrypoint, command, environment, port.
    assert exec_form(final, "ENTRYPOINT") == build.ENTRYPOINT
    assert exec_form(final, "CMD") == build.CMD
    env = [item for w, rest in final if w == "ENV" for item in rest.split()]
    assert env == build.ENV
    assert [rest for w, rest in final if w == "EXPOSE"] == [str(build.METRICS_PORT)]
    # Both name the image the chart pulls by default.
    assert build.IMAGE_REPOSITORY == values()["image"]["repository"]


def test_chart_runs_the_image_the_way_it_is_built():
    """The chart leaves the entrypoint alone and passes the Dockerfile's CMD first."""
    deployment = (CHART / "templates" / "deployment.yaml").read_text()
    assert not re.search(r"^\s*command:", deployment, re.MULTILINE), "the chart must not override the ENTRYPOINT"
    first_arg = re.search(r"^\s*args:\s*\n\s*- (\S+)", deployment, re.MULTILINE)
    assert first_arg and [first_arg.group(1)] == exec_form(final_stage(), "CMD")
    exposed = [rest for w, rest in final_stage() if w == "EXPOSE"]
    assert exposed == [str(values()["metrics"]["port"])]


def test_chart_default_image_is_the_documented_build():
    """The build command in the Dockerfile's header tags the image the chart pulls by default."""
    documented = re.search(r"docker build -t (\S+):(\S+) \.", (REPO / "Dockerfile").read_text())
    assert documented, "the Dockerfile's header documents its build command"
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert documented.group(1) == values()["image"]["repository"]
    assert documented.group(2) == chart["appVersion"] == pyproject()["project"]["version"]


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last matching pattern wins; `!` re-includes."""
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
        if any(fnmatch.fnmatch(p, pattern) or fnmatch.fnmatch(p, pattern.replace("**/", "")) for p in prefixes):
            ignored = not negate
    return ignored


def test_dockerignore_keeps_what_the_build_needs_and_nothing_else():
    patterns = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    for needed in ("pyproject.toml", "README.md", "requirements-operator.lock", "hack/image/build.lock",
                   "operator/certmint/cli/__init__.py", "operator/certmint/pki/keys.py"):
        assert not _ignored(needed, patterns), f".dockerignore drops {needed}, which the build needs"
    for unwanted in (".git/HEAD", ".venv/bin/python", ".cache/bin/kube-apiserver", "tests/conftest.py", "dist/x.oci.tar",
                     "hack/image/build.py", "requirements.lock",
                     "operator/certmint/__pycache__/cli.cpython-311.pyc"):
        assert _ignored(unwanted, patterns), f".dockerignore should keep {unwanted} out of the build context"
    copied = [rest.split()[0] for w, rest in instructions() if w == "COPY" and "--from" not in rest]
    for source in copied:
        assert not _ignored(source.rstrip("/"), patterns), f"COPY {source} is excluded by .dockerignore"
