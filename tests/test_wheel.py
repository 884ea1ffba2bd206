"""Packaging: the self-contained manylinux wheel, the source distribution and the build backend.

The manylinux wheel is built once per session (its libvips once per clone, in .cache/native: `make
native`), then installed into fresh virtual environments of every supported CPython, into one run in a
mount namespace where the system's libvips and its libraries are hidden, and used for the image
fidelity tests with its own libraries.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

from support.images import photo, save
from support.process import ROOT

PYENV = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
# One wheel for every CPython >= 3.11 (cffi's ABI mode): each of these gets a fresh venv.
PYTHONS = ("3.11", "3.12", "3.13")
MAX_WHEEL_BYTES = 30 * 1024 * 1024
# The oldest glibc the wheel may need: manylinux_2_34 (RHEL 9 and rebuilds, Ubuntu 22.04, Debian 12).
GLIBC_FLOOR = (2, 34)
# What the wheel leaves to the system: the glibc, the compiler runtime, and libexpat (manylinux policy).
SYSTEM_LIBRARY = re.compile(
    r"^(ld-linux[\w-]*|libc|libm|libmvec|libpthread|libdl|librt|libresolv|libanl|libutil|libnsl"
    r"|libgcc_s|libstdc\+\+|libatomic|libexpat)\.so"
)
# The system's libvips brings these in; none may be in (or needed by) the wheel.
UNWANTED = (
    "poppler",
    "cairo",
    "pango",
    "OpenEXR",
    "Imath",
    "cfitsio",
    "Magick",
    "heif",
    "tiff",
    "rsvg",
    "gsf",
)


def _env() -> dict[str, str]:
    """The environment of a process that must use an installed datago, not the source tree's."""
    return {
        k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DATAGO_LIBRARY", "LD_LIBRARY_PATH")
    }


def _python(version: str) -> Path:
    found = sorted(PYENV.glob(f"{version}.*/bin/python3"))
    if not found:
        if os.environ.get("CI"):
            pytest.fail(f"CPython {version} is not installed under {PYENV}")
        pytest.skip(f"CPython {version} is not installed under {PYENV}")
    return found[-1]


def _backend() -> ModuleType:
    # Loaded under another name: "build" could also be the PyPA package.
    spec = importlib.util.spec_from_file_location("datago_build_backend", ROOT / "build.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(cmd: list[str | Path], timeout: float = 600, **kwargs: object) -> subprocess.CompletedProcess[str]:
    kwargs.setdefault("env", _env())
    result = subprocess.run(
        [str(c) for c in cmd], capture_output=True, text=True, timeout=timeout, check=False, **kwargs
    )  # type: ignore[call-overload]
    shown = " ".join(str(c) for c in cmd)[:500]
    assert result.returncode == 0, f"{shown}:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result


def _venv(python: Path, where: Path, install: Path) -> Path:
    """A fresh virtual environment of ``python`` at ``where``, with ``install`` pip-installed."""
    _run([python, "-m", "venv", where], timeout=180)
    py = where / "bin" / "python"
    _run([py, "-m", "pip", "install", "-q", "--disable-pip-version-check", install], timeout=900)
    return py


# -- fixtures ---------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def manylinux_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheelhouse")
    result = subprocess.run(
        [sys.executable, ROOT / "build.py", "--manylinux", out],
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    (wheel,) = out.glob("*.whl")
    return wheel


@pytest.fixture(scope="session")
def smoke_images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """JPEG, PNG and WebP files of several shapes, outside the source tree."""
    root = tmp_path_factory.mktemp("smoke") / "images"
    shapes = [(160, 120), (90, 150), (128, 128), (300, 100)]
    for i, (w, h) in enumerate(shapes):
        for fmt, ext in (("JPEG", "jpg"), ("PNG", "png"), ("WEBP", "webp")):
            save(root / f"{ext}{i}.{ext}", photo(w, h, seed=i), fmt)
            if fmt != "WEBP":
                save(root.parent / "forked" / f"{ext}{i}.{ext}", photo(w, h, seed=i), fmt)
    return root


@pytest.fixture(scope="session")
def wheel_venvs(tmp_path_factory: pytest.TempPathFactory, manylinux_wheel: Path) -> Callable[[str], Path]:
    """CPython version -> the python of a fresh venv with the wheel installed (made once each)."""
    made: dict[str, Path] = {}

    def get(version: str) -> Path:
        if version not in made:
            where = tmp_path_factory.mktemp(f"venv{version}") / "venv"
            made[version] = _venv(_python(version), where, manylinux_wheel)
        return made[version]

    return get


# The smoke test: import, iterate the folder with crop_and_resize, and say which libraries served it.
SMOKE = """
import json, os, sys
import datago

root = sys.argv[1]
config = {"source_type": "filesystem", "source_config": {"root_path": root},
          "image_config": {"crop_and_resize": True, "default_image_size": 64, "downsampling_ratio": 16}}
with datago.Client(config) as client:
    samples = list(client)
    skips = client.stats()
# A forked child loads a private copy of libdatago.so (a fresh Go runtime): it must find the bundled
# libraries. (JPEG and PNG only: a WebP decode in a child forked after one in the parent hangs, with
# the system's libvips too; a known bug outside packaging.)
forked = os.path.join(os.path.dirname(root), "forked")
pid = os.fork()
if pid == 0:
    config["source_config"]["root_path"] = forked
    with datago.Client(config) as client:
        os._exit(0 if len(list(client)) == len(os.listdir(forked)) else 3)
assert os.waitpid(pid, 0)[1] == 0, "the forked child failed"
maps = open("/proc/self/maps").read().split("\\n")
libs = sorted({line.split()[-1] for line in maps if ".so" in line and "/" in line})
print(json.dumps({
    "file": datago.__file__,
    "ids": sorted(s.id for s in samples),
    "sizes": sorted({s.image.size for s in samples}),
    "modes": sorted({s.image.mode for s in samples}),
    "shapes": sorted({tuple(s.array.shape) for s in samples}),
    "libs": libs,
}))
"""


def _smoke(py: Path, images: Path, bundled: bool = True) -> dict[str, object]:
    cwd = images.parent  # not the source tree: `import datago` must find the installed package
    result = _run([py, "-c", SMOKE, images], timeout=300, cwd=cwd)
    report: dict[str, object] = json.loads(result.stdout.strip().splitlines()[-1])
    site = py.parent.parent
    assert str(report["file"]).startswith(str(site)), report["file"]
    expected = sorted(str(p) for p in images.iterdir())
    assert report["ids"] == expected
    for w, h in report["sizes"]:  # type: ignore[attr-defined]
        assert w % 16 == 0 and h % 16 == 0 and 0.5 <= w / h <= 2, (w, h)
    assert report["modes"] == ["RGB"]
    if not bundled:
        return report
    libs: list[str] = report["libs"]  # type: ignore[assignment]
    vips = [p for p in libs if "libvips" in Path(p).name]
    assert vips and all("/datago.libs/" in p and p.startswith(str(site)) for p in vips), vips
    for name in ("libjpeg", "libpng16", "libwebp", "libglib-2.0", "liblcms2", "libexif"):
        # The wheel's copy, and no system copy (Pillow's wheel brings its own libjpeg and libpng too).
        used = [p for p in libs if Path(p).name.startswith(name)]
        assert any("/datago.libs/" in p for p in used), (name, used)
        assert all(p.startswith(str(site)) for p in used), (name, used)
    return report


# -- the manylinux wheel ----------------------------------------------------------------------------


def _elf_needed(path: Path) -> tuple[list[str], list[str]]:
    from elftools.elf.dynamic import DynamicSection
    from elftools.elf.elffile import ELFFile

    needed: list[str] = []
    rpath: list[str] = []
    with open(path, "rb") as f:
        for section in ELFFile(f).iter_sections():
            if isinstance(section, DynamicSection):
                for tag in section.iter_tags():
                    if tag.entry.d_tag == "DT_NEEDED":
                        needed.append(tag.needed)
                    elif tag.entry.d_tag in ("DT_RPATH", "DT_RUNPATH"):
                        rpath.append(tag.runpath if tag.entry.d_tag == "DT_RUNPATH" else tag.rpath)
    return needed, rpath


@pytest.mark.wheel
def test_manylinux_wheel_is_self_contained(manylinux_wheel: Path, tmp_path: Path) -> None:
    name = manylinux_wheel.name
    match = re.fullmatch(r"datago-([\w.]+)-py3-none-manylinux_(\d+)_(\d+)_x86_64\.whl", name)
    assert match, name
    assert (int(match.group(2)), int(match.group(3))) <= GLIBC_FLOOR, name
    size = manylinux_wheel.stat().st_size
    print(f"{name}: {size / 1e6:.1f} MB")
    assert size <= MAX_WHEEL_BYTES
    # auditwheel accepts it, with the tag it carries.
    assert _backend().auditwheel_show(manylinux_wheel) in name

    with zipfile.ZipFile(manylinux_wheel) as zf:
        assert zf.testzip() is None
        names = zf.namelist()
        dist_info = f"datago-{match.group(1)}.dist-info"
        record = zf.read(f"{dist_info}/RECORD").decode()
        assert {line.split(",")[0] for line in record.splitlines()} == set(names)
        wheel_text = zf.read(f"{dist_info}/WHEEL").decode()
        assert f"Tag: py3-none-manylinux_{match.group(2)}_{match.group(3)}_x86_64" in wheel_text
        zf.extractall(tmp_path)
    libs = sorted((tmp_path / "datago.libs").iterdir())
    lib_names = [p.name for p in libs]
    for wanted in ("libvips-", "libjpeg-", "libpng16-", "libwebp-", "liblcms2-", "libexif-", "libglib-2.0-"):
        assert any(n.startswith(wanted) for n in lib_names), (wanted, lib_names)
    for unwanted in UNWANTED:
        assert not any(unwanted.lower() in n.lower() for n in lib_names), (unwanted, lib_names)

    # Every library needed is in the wheel or left to the system by the policy; nothing needs the
    # system's libvips.
    library = tmp_path / "datago" / "libdatago.so"
    needed, rpath = _elf_needed(library)
    assert rpath == ["$ORIGIN/../datago.libs"], rpath
    for elf in [library, *libs]:
        needed, _ = _elf_needed(elf)
        for dep in needed:
            assert SYSTEM_LIBRARY.match(dep) or dep in lib_names, (elf.name, dep)

    # The licences: one row per bundled library, each pointing at its package's copyright file(s).
    licences = tmp_path / dist_info / "licenses"
    assert (licences / "LICENSE").read_text().startswith("MIT")
    rows = [line.split("\t") for line in (licences / "BUNDLED.tsv").read_text().splitlines()[1:]]
    assert sorted(r[0] for r in rows) == lib_names
    for file_name, _, package, version, _ in rows:
        assert version and any((licences / package).iterdir()), (file_name, package)
    vips_licence = (licences / "vips" / "LICENSE").read_text()
    assert "GNU LESSER GENERAL PUBLIC LICENSE" in vips_licence.upper()


@pytest.mark.wheel
@pytest.mark.parametrize("version", PYTHONS)
def test_wheel_runs_in_fresh_venv_of_every_python(
    version: str, wheel_venvs: Callable[[str], Path], smoke_images: Path
) -> None:
    py = wheel_venvs(version)
    out = _run([py, "-c", "import sys; print(sys.version_info[:2])"]).stdout
    assert out.strip() == str(tuple(int(x) for x in version.split("."))), out
    _smoke(py, smoke_images)


def _system_libvips_closure() -> list[Path]:
    """The system's libvips and every library it loads but the glibc, the compiler runtime and the two
    manylinux policy libraries (libexpat, libz) that Python and Pillow's wheel themselves need."""
    found = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True, check=True).stdout
    match = re.search(r"libvips\.so\.42 \(libc6,x86-64\) => (\S+)", found)
    if match is None:
        pytest.skip("the system has no libvips to hide")
    vips = Path(match.group(1))
    out = subprocess.run(["ldd", str(vips)], capture_output=True, text=True, check=True).stdout
    paths = [vips]
    for line in out.splitlines():
        m = re.match(r"\s*(\S+) => (\S+) \(", line)
        if m and not SYSTEM_LIBRARY.match(m.group(1)) and not m.group(1).startswith("libz.so"):
            paths.append(Path(m.group(2)))
    return sorted({p.resolve() for p in paths})


@pytest.mark.wheel
@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None, reason="needs root and unshare")
def test_wheel_works_where_libvips_is_absent(wheel_venvs: Callable[[str], Path], smoke_images: Path) -> None:
    hidden = _system_libvips_closure()
    assert len(hidden) > 30  # Debian's libvips42: ~100 libraries
    py = wheel_venvs("3.12")
    # In a private mount namespace, each of those files becomes /dev/null: the loader cannot use them.
    # mount(2) through ctypes, since the mount command itself needs some of them.
    mounter = (
        "import ctypes, os, sys\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "for path in sys.argv[2:]:\n"
        "    if libc.mount(b'/dev/null', path.encode(), None, 4096, None) != 0:  # MS_BIND\n"
        "        raise OSError(ctypes.get_errno(), 'mount --bind /dev/null', path)\n"
        "os.execv('/bin/sh', ['sh', '-c', sys.argv[1]])\n"
    )
    probe = (
        "import sys\n"
        f"sizes = [len(open(p, 'rb').read()) for p in {[str(p) for p in hidden]!r}]\n"
        "print('hidden:', len(sizes)) if not any(sizes) else sys.exit('a system library is readable')\n"
    )
    script = f'{py} -c "$PROBE" && exec {py} -c "$SMOKE" {smoke_images}'
    env = dict(_env(), PROBE=probe, SMOKE=SMOKE)
    cmd = ["unshare", "-m", "--propagation", "private", sys.executable, "-c", mounter, script, *hidden]
    result = _run(cmd, env=env, timeout=300, cwd=smoke_images.parent)
    assert "hidden:" in result.stdout
    report = json.loads(result.stdout.strip().splitlines()[-1])
    libs = [Path(p).resolve() for p in report["libs"]]
    assert not set(libs) & set(hidden), set(libs) & set(hidden)
    assert any(p.name.startswith("libz-") and p.parent.name == "datago.libs" for p in libs), libs
    assert len(report["ids"]) == len(list(smoke_images.iterdir()))


@pytest.fixture(scope="session")
def wheel_library(wheel_venvs: Callable[[str], Path]) -> Path:
    """libdatago.so as installed from the wheel (its RUNPATH loads the wheel's own libraries)."""
    py = wheel_venvs("3.11")
    out = _run([py, "-c", "import datago._lib as l; print(l.library_path())"]).stdout
    return Path(out.strip())


@pytest.mark.wheel
def test_fidelity_with_the_wheels_libraries(wheel_library: Path) -> None:
    """tests/test_images.py (PNG identical to Pillow, JPEG within 2, resize PSNR >= 35 dB, EXIF...)
    against the wheel's libdatago.so, libvips and codecs."""
    # This checkout's Python package (whose ABI the wheel's library implements), the wheel's library.
    env = dict(os.environ, DATAGO_LIBRARY=str(wheel_library), PYTHONPATH=str(ROOT / "python"))
    check = (
        "import datago, datago._lib as l; datago.aspect_ratio_buckets(512, 16, 0.5, 2.0)\n"
        "print([x.split()[-1] for x in open('/proc/self/maps') if 'libvips' in x][0])"
    )
    loaded = _run([sys.executable, "-c", check], env=env).stdout.strip()
    assert loaded.startswith(str(wheel_library.parent.parent / "datago.libs")), loaded
    result = _run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_images.py"],
                  env=env, cwd=ROOT, timeout=900)  # fmt: skip
    assert re.search(r"\d+ passed", result.stdout) and " failed" not in result.stdout, result.stdout[-2000:]


@pytest.mark.wheel
def test_go_imaging_tests_with_the_wheels_libvips(tmp_path: Path) -> None:
    """go/internal/imaging's tests (the direct decoders against libvips, colour, EXIF, resize) linked
    to the libvips the wheel bundles."""
    backend = _backend()
    prefix = backend.NATIVE_PREFIX / "lib"
    assert (prefix / "libvips.so.42").is_file()  # built by the manylinux_wheel fixture or make native
    env = dict(
        _env(),
        PKG_CONFIG_PATH=str(prefix / "pkgconfig"),
        CGO_LDFLAGS=f"-Wl,-rpath,{prefix}",
        CGO_ENABLED="1",
    )
    binary = tmp_path / "imaging.test"
    _run(["go", "test", "-c", "-o", binary, "./internal/imaging"], env=env, cwd=ROOT / "go", timeout=900)
    ldd = _run(["ldd", binary]).stdout
    assert f"{prefix}/libvips.so.42" in ldd, ldd
    result = _run([binary, "-test.count=1"], cwd=ROOT / "go" / "internal" / "imaging", timeout=600)
    assert result.stdout.strip().endswith("PASS"), result.stdout[-2000:]


def _installed_copy(wheel_library: Path, tmp_path: Path) -> Path:
    """A copy of the installed package and its bundled libraries, to break."""
    site = tmp_path / "site"
    shutil.copytree(wheel_library.parent, site / "datago")
    shutil.copytree(wheel_library.parent.parent / "datago.libs", site / "datago.libs")
    return site


def _load_error(site: Path) -> str:
    script = (
        "import datago\n"
        "try:\n    datago.aspect_ratio_buckets(512, 16, 0.5, 2.0)\n"
        "except ImportError as e:\n    print(type(e).__name__, e)\n"
        "else:\n    raise SystemExit('loaded')\n"
    )
    env = dict(_env(), PYTHONPATH=str(site))
    return _run([sys.executable, "-c", script], env=env, cwd=site).stdout


@pytest.mark.wheel
def test_load_error_names_missing_bundled_library(wheel_library: Path, tmp_path: Path) -> None:
    site = _installed_copy(wheel_library, tmp_path)
    (vips,) = (site / "datago.libs").glob("libvips-*")
    vips.unlink()
    out = _load_error(site)
    assert out.startswith("LibraryLoadError"), out
    assert vips.name in out and "installation is incomplete" in out and "--force-reinstall" in out, out


@pytest.mark.wheel
@pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler for the stand-in library")
def test_load_error_names_missing_symbol(wheel_library: Path, tmp_path: Path) -> None:
    site = _installed_copy(wheel_library, tmp_path)
    (webp,) = (site / "datago.libs").glob("libwebp-*")
    # A stand-in with the same soname and none of libwebp's functions.
    (tmp_path / "empty.c").write_text("int datago_not_webp(void) { return 0; }\n")
    _run(["cc", "-shared", "-fPIC", f"-Wl,-soname,{webp.name}", "-o", webp, tmp_path / "empty.c"])
    out = _load_error(site)
    assert out.startswith("LibraryLoadError"), out
    assert re.search(r"lacks the symbol WebP\w+", out) and "--force-reinstall" in out, out


def test_load_error_names_too_old_glibc() -> None:
    from datago import _lib

    error = OSError(
        "cannot load library '/v/datago/libdatago.so': /lib/x86_64-linux-gnu/libc.so.6: version "
        "`GLIBC_2.34' not found (required by /v/datago.libs/libglib-2.0-1708487c.so.0)"
    )
    message = _lib.explain_load_error(Path("/v/datago/libdatago.so"), error)
    assert "libglib-2.0-1708487c.so.0 needs GLIBC_2.34" in message and "--no-binary datago" in message


# -- the source distribution and the build backend --------------------------------------------------


def test_metadata_and_tags() -> None:
    backend = _backend()
    assert backend.get_requires_for_build_wheel() == []
    text = backend.metadata_text()
    assert "Name: datago" in text
    for dep in ("cffi", "numpy", "pillow"):
        assert f"Requires-Dist: {dep}\n" in text
    assert "Requires-Python: >=3.11" in text
    assert 'extra == "test"' in text
    assert backend.wheel_tag().startswith("py3-none-")
    assert not backend.wheel_tag().endswith("any")
    import datago

    assert backend.version() == datago.__version__


@pytest.fixture(scope="module")
def sdist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sdist")
    return out / _backend().write_sdist(out)


def test_sdist_contents(sdist: Path) -> None:
    import tarfile

    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames()}
    for wanted in ("PKG-INFO", "pyproject.toml", "build.py", "LICENSE", "python/datago/_lib.py",
                   "go/go.mod", "go/go.sum", "go/capi/datago.h", "go/internal/imaging/vips.c"):  # fmt: skip
        assert wanted in names, wanted
    assert not any(n.endswith(".so") for n in names)


@pytest.mark.wheel
def test_sdist_builds_with_pip(sdist: Path, smoke_images: Path, tmp_path: Path) -> None:
    py = _venv(_python("3.12"), tmp_path / "venv", sdist)
    report = _smoke(py, smoke_images, bundled=False)
    # Built on this machine: linked to the system's libvips, not bundling one.
    assert any(Path(p).name.startswith("libvips.so") for p in report["libs"]), report["libs"]  # type: ignore[attr-defined]


@pytest.mark.wheel
def test_sdist_without_toolchain_names_what_is_missing(sdist: Path, tmp_path: Path) -> None:
    _run([sys.executable, "-m", "venv", tmp_path / "venv"], timeout=180)
    py = tmp_path / "venv" / "bin" / "python"
    # No Go, no C compiler, no pkg-config on PATH: only the interpreter, called by its path.
    env = dict(_env(), PATH=str(tmp_path / "empty"), CC="")
    result = subprocess.run(
        [str(py), "-m", "pip", "install", "--no-deps", "--disable-pip-version-check", str(sdist)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "cannot build libdatago.so, missing: the Go toolchain" in output, output[-3000:]
    assert "a C compiler for cgo" in output and "pkg-config" in output, output[-3000:]


def test_wheel_cache_is_ignored_by_git() -> None:
    ignored = subprocess.run(["git", "check-ignore", "-q", ".cache/native"], cwd=ROOT, check=False)
    assert ignored.returncode == 0
