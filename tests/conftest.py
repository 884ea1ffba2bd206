"""Fixtures that generate image folders (with Pillow and NumPy) for the datago tests."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, MutableMapping
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from support.background import BackgroundRun  # noqa: E402
from support.images import photo, save  # noqa: E402
from support.process import LIBRARY, PYTHON_DIR  # noqa: E402

if str(PYTHON_DIR) not in sys.path:
    sys.path.insert(0, str(PYTHON_DIR))

# Where the credential chains look for this machine's files: nowhere (paths that do not exist).
NOWHERE = Path("/nonexistent/datago-tests")


def isolate_credentials(env: MutableMapping[str, str]) -> None:
    """Keep every test off this machine's cloud credentials and configuration, and off the metadata
    services: no AWS/Azure/Google/Hub variable of the machine survives; the AWS SDK reads empty config and
    credentials paths and never asks the instance metadata service; Google's ADC finds no gcloud file and
    asks for the metadata server at a closed loopback port, not by its DNS name; the Hub's token file is
    not found. A test that needs a credential sets its own (monkeypatch)."""
    prefixes = ("AWS_", "AZURE_", "GOOGLE_", "GCE_", "CLOUDSDK_", "HF_", "IDENTITY_", "MSI_")
    for k in list(env):
        if k.startswith(prefixes) or k in ("STORAGE_EMULATOR_HOST", "IMDS_ENDPOINT"):
            del env[k]
    env.update(
        AWS_EC2_METADATA_DISABLED="true",
        AWS_CONFIG_FILE=str(NOWHERE / "aws-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(NOWHERE / "aws-credentials"),
        CLOUDSDK_CONFIG=str(NOWHERE / "gcloud"),
        GCE_METADATA_HOST="127.0.0.1:9",
        HF_HOME=str(NOWHERE / "huggingface"),
    )


# At import, not in a fixture: every subprocess a test starts (torchrun workers, scripts) inherits it.
isolate_credentials(os.environ)


def pytest_report_header(config: pytest.Config) -> str:
    return f"datago library: {os.environ.get('DATAGO_LIBRARY') or LIBRARY}"


# The background runs of the session (support/background.py), by node id of the test that asserts on each.
BACKGROUND_RUNS = pytest.StashKey[dict[str, BackgroundRun]]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "background(run, timeout=600): run(workdir), a function of the test's module, starts in a "
        "subprocess once the session has collected the test; the test asserts on its result "
        "(the `background` fixture)",
    )
    config.stash[BACKGROUND_RUNS] = {}


def _background_run(item: pytest.Item) -> BackgroundRun | None:
    """The item's run, started now if it was not yet."""
    mark = item.get_closest_marker("background")
    if mark is None:
        return None
    runs = item.config.stash[BACKGROUND_RUNS]
    if item.nodeid not in runs:
        runs[item.nodeid] = BackgroundRun(**mark.kwargs)
    return runs[item.nodeid]


def pytest_collection_finish(session: pytest.Session) -> None:
    # At the start of the session: the runs overlap each other and every test before theirs.
    if session.config.option.collectonly or not os.environ.get("DATAGO_LIBRARY") and not LIBRARY.is_file():
        return
    for item in session.items:
        _background_run(item)


def pytest_sessionfinish(session: pytest.Session) -> None:
    # Also when a test failed or the session was interrupted: no server of a run outlives the session.
    for run in session.config.stash.get(BACKGROUND_RUNS, {}).values():
        run.stop()


@pytest.fixture
def background(request: pytest.FixtureRequest) -> BackgroundRun:
    """The run of the test's ``background`` mark; the test asserts on ``background.result()``."""
    run = _background_run(request.node)
    if run is None:
        raise pytest.UsageError(f"{request.node.nodeid} uses the background fixture without the mark")
    return run


@pytest.fixture(scope="session", autouse=True)
def _library_built() -> None:
    if not os.environ.get("DATAGO_LIBRARY") and not LIBRARY.is_file():
        pytest.exit(f"{LIBRARY} does not exist: run `python3 build.py` first", returncode=2)


@pytest.fixture
def image_tree(tmp_path: Path) -> tuple[Path, list[Path]]:
    """A nested tree of images with mixed-case extensions, non-image files and a symlink cycle.

    Returns (root, the image files datago must deliver).
    """
    root = tmp_path / "tree"
    expected: list[Path] = []
    specs = [
        ("a.jpg", "JPEG"),
        ("B.JPG", "JPEG"),
        ("c.Png", "PNG"),
        ("d.webp", "WEBP"),
        ("e.jpeg", "JPEG"),
        ("sub/f.png", "PNG"),
        ("sub/G.PNG", "PNG"),
        ("sub/deeper/h.JPEG", "JPEG"),
        ("sub/deeper/i.WebP", "WEBP"),
        ("other/j.jpg", "JPEG"),
        ("other/nested/k.png", "PNG"),
        ("other/nested/more/l.jpg", "JPEG"),
    ]
    for i, (rel, fmt) in enumerate(specs):
        expected.append(save(root / rel, photo(24 + i, 20 + 2 * i, seed=i), fmt))
    # Non-ASCII names, one of them not even UTF-8: ids decode like os.fsdecode.
    expected.append(save(root / "sub" / "ünïcödé.png", photo(21, 17, seed=40), "PNG"))
    raw_name = os.fsencode(root / "other") + b"/bad\xffname.png"
    with open(raw_name, "wb") as f:
        f.write((root / "sub" / "ünïcödé.png").read_bytes())
    expected.append(Path(os.fsdecode(raw_name)))
    for rel, data in [
        ("readme.txt", b"not an image"),
        ("sub/meta.json", b"{}"),
        ("sub/deeper/image.jpg.bak", b"\xff\xd8\xff"),
        ("other/noext", b"\x89PNG"),
        ("other/photo.gif", b"GIF89a"),
    ]:
        (root / rel).write_bytes(data)
    os.symlink(root, root / "sub" / "deeper" / "loop")  # a cycle back to the root
    os.symlink("..", root / "other" / "nested" / "up")  # a relative cycle
    return root, expected


@pytest.fixture
def photo_dir(tmp_path: Path) -> Callable[..., tuple[Path, list[Path]]]:
    """Factory: ``photo_dir(n, size=(w, h), fmt="PNG")`` writes n photo-like images into a new folder."""
    counter = iter(range(1_000_000))

    def make(
        n: int, size: tuple[int, int] = (32, 24), fmt: str = "PNG", name: str = ""
    ) -> tuple[Path, list[Path]]:
        root = tmp_path / (name or f"photos{next(counter)}")
        ext = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp"}[fmt]
        paths = [save(root / f"img{i:05d}.{ext}", photo(*size, seed=i), fmt) for i in range(n)]
        return root, paths

    return make
