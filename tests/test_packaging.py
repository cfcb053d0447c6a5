"""The distributions as published: the sdist and the wheel built from it (offline, with
the venv's hatchling), their metadata and files, and what the console script and the
async client say in an environment without their extras.

The wheel is installed, without dependencies, into a fresh virtual environment (no pip
in it: the venv's pip installs into it with ``--python``); where a virtual environment
cannot be made, those tests are skipped with the reason.
"""

from __future__ import annotations

import email.message
import email.parser
import os
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("beanproto", "beanproto_sync", "beanproto_anyio", "beanproto_cli")
EXTRAS = {"anyio", "trio", "cli", "prometheus"}
PROJECT_URLS = {"Homepage", "Documentation", "Source", "Changelog", "Issues"}
CLASSIFIERS = {
    "Programming Language :: Python :: 3.10",
    "Programming Language :: Python :: 3.11",
    "Programming Language :: Python :: 3.12",
    "Programming Language :: Python :: 3.13",
    "Framework :: AnyIO",
    "Framework :: AsyncIO",
    "Framework :: Trio",
    "Typing :: Typed",
    "Topic :: System :: Distributed Computing",
    "Operating System :: POSIX",
}
PROMETHEUS_MESSAGE = (
    "ModuleNotFoundError: beanproto.prometheus needs prometheus_client: "
    "pip install 'beanproto[prometheus]'"
)
ANYIO_MESSAGE = (
    "ModuleNotFoundError: beanproto_anyio needs anyio: "
    "pip install 'beanproto[anyio]' (or 'beanproto[trio]')"
)


def _env() -> dict[str, str]:
    """This environment without what would change a build or an import: the opt-in
    mypyc hook, a PYTHONPATH (the compiled core's), pip's settings."""
    drop = {"HATCH_BUILD_HOOK_ENABLE_MYPYC", "PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"}
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("PIP_")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PIP_CONFIG_FILE"] = os.devnull
    return env


def _run(args: list[str | Path], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


@dataclass(frozen=True)
class Dists:
    sdist: Path
    wheel: Path


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> Dists:
    """The sdist, and the wheel built from it (so the sdist must be complete)."""
    out = tmp_path_factory.mktemp("dist")
    result = _run([sys.executable, "-m", "build", "--no-isolation", "--outdir", out, ROOT], out)
    assert result.returncode == 0, result.stdout + result.stderr
    [sdist] = out.glob("*.tar.gz")
    [wheel] = out.glob("*.whl")
    return Dists(sdist, wheel)


def _parse(text: str) -> email.message.Message:
    return email.parser.Parser().parsestr(text)


def _wheel_metadata(wheel: Path) -> email.message.Message:
    with zipfile.ZipFile(wheel) as zf:
        [name] = [n for n in zf.namelist() if n.endswith(".dist-info/METADATA")]
        return _parse(zf.read(name).decode())


def _sdist_metadata(sdist: Path) -> email.message.Message:
    with tarfile.open(sdist) as tf:
        [member] = [
            m for m in tf.getmembers() if m.name.count("/") == 1 and m.name.endswith("/PKG-INFO")
        ]
        data = tf.extractfile(member)
        assert data is not None
        return _parse(data.read().decode())


def test_the_license_is_in_both(dists: Dists) -> None:
    license_text = (ROOT / "LICENSE").read_text()
    assert license_text.startswith("MIT License\n")
    with tarfile.open(dists.sdist) as tf:
        [member] = [
            m for m in tf.getmembers() if m.name.count("/") == 1 and m.name.endswith("/LICENSE")
        ]
        data = tf.extractfile(member)
        assert data is not None
        assert data.read().decode() == license_text
    with zipfile.ZipFile(dists.wheel) as zf:
        [name] = [n for n in zf.namelist() if n.endswith(".dist-info/licenses/LICENSE")]
        assert zf.read(name).decode() == license_text


@pytest.mark.parametrize("which", ["wheel", "sdist"])
def test_metadata(dists: Dists, which: str) -> None:
    meta = _wheel_metadata(dists.wheel) if which == "wheel" else _sdist_metadata(dists.sdist)
    assert meta["Name"] == "beanproto"
    assert meta["License-Expression"] == "MIT"
    assert meta.get_all("License-File") == ["LICENSE"]
    classifiers = set(meta.get_all("Classifier") or [])
    assert classifiers >= CLASSIFIERS
    assert not [c for c in classifiers if c.startswith("License ::")]  # PEP 639: the expression
    urls = dict(u.split(", ", 1) for u in meta.get_all("Project-URL") or [])
    assert set(urls) == PROJECT_URLS
    assert all(url.startswith("https://") for url in urls.values())
    # The dependency groups (dev, docs, bench) are not extras: they are never published.
    assert set(meta.get_all("Provides-Extra") or []) == EXTRAS
    # The core has no dependencies: every requirement belongs to an extra.
    for requirement in meta.get_all("Requires-Dist") or []:
        assert "extra ==" in requirement, requirement


def test_the_wheel_holds_the_four_packages_and_nothing_else(dists: Dists) -> None:
    with zipfile.ZipFile(dists.wheel) as zf:
        names = zf.namelist()
        entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        assert "beanproto = beanproto_cli._entry:main" in zf.read(entry_points).decode()
    tops = {name.split("/")[0] for name in names}
    [dist_info] = [t for t in tops if t.endswith(".dist-info")]
    assert tops == {*PACKAGES, dist_info}
    files = {name for name in names if not name.startswith(dist_info + "/")}
    expected = {
        path.relative_to(ROOT / "src").as_posix()
        for package in PACKAGES
        for path in (ROOT / "src" / package).rglob("*")
        if path.suffix == ".py" or path.name == "py.typed"
    }
    assert files == expected
    for package in PACKAGES:
        assert f"{package}/py.typed" in files


def test_the_sdist_leaves_out_local_state(dists: Dists) -> None:
    with tarfile.open(dists.sdist) as tf:
        names = [m.name.split("/", 1)[1] for m in tf.getmembers() if "/" in m.name]
    assert "pyproject.toml" in names
    assert "src/beanproto/py.typed" in names
    local = (".venv/", ".build/", "__pycache__/", ".hypothesis/", ".mypy_cache/")
    assert not [n for n in names if any(part in n + "/" for part in local)]


# --- without the extras -------------------------------------------------------------------


@pytest.fixture(scope="module")
def bare(dists: Dists, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A virtual environment with the wheel alone: no anyio, click or rich."""
    venv = tmp_path_factory.mktemp("bare") / "venv"
    made = _run([sys.executable, "-m", "venv", "--without-pip", venv], venv.parent)
    if made.returncode != 0 or not (venv / "bin" / "python").exists():
        pytest.skip(f"cannot create a virtual environment here: {made.stderr.strip()[-300:]}")
    install = [sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install"]
    result = _run([*install, "-q", "--no-deps", "--no-index", dists.wheel], venv.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    yield venv


def test_the_bare_environment_lacks_the_extras(bare: Path) -> None:
    code = (
        "import importlib.util as u; "
        "print([m for m in ('anyio', 'click', 'rich', 'prometheus_client') if u.find_spec(m)])"
    )
    result = _run([bare / "bin" / "python", "-c", code], bare.parent)
    assert result.stdout.strip() == "[]", result.stderr
    # The core and the blocking client need nothing.
    result = _run([bare / "bin" / "python", "-c", "import beanproto, beanproto_sync"], bare.parent)
    assert result.returncode == 0, result.stderr


def test_import_beanproto_anyio_names_the_extra(bare: Path) -> None:
    result = _run([bare / "bin" / "python", "-c", "import beanproto_anyio"], bare.parent)
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == ANYIO_MESSAGE
    assert "During handling" not in result.stderr
    assert "direct cause" not in result.stderr


def test_import_beanproto_prometheus_names_the_extra(bare: Path) -> None:
    result = _run([bare / "bin" / "python", "-c", "import beanproto.prometheus"], bare.parent)
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == PROMETHEUS_MESSAGE
    assert "During handling" not in result.stderr
    assert "direct cause" not in result.stderr


@pytest.mark.parametrize(
    "command",
    [
        ["bin/beanproto"],
        ["bin/python", "-m", "beanproto_cli"],
        ["bin/python", "-m", "beanproto_sync"],
    ],
    ids=["console script", "-m beanproto_cli", "-m beanproto_sync"],
)
def test_the_command_names_the_cli_extra(bare: Path, command: list[str]) -> None:
    result = _run([bare / command[0], *command[1:], "--help"], bare.parent)
    assert result.returncode in (1, 2)
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    [line] = result.stderr.splitlines()
    assert "pip install 'beanproto[cli]'" in line
