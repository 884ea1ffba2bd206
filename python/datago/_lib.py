"""The only module that touches cffi: declarations, lazy loading, typed calls and status handling of
libdatago.so. The rest of the package calls the functions below and never sees ``ffi`` or ``lib``.

The declarations come from go/capi/datago.h itself (shipped in the wheel as datago/datago.h), read
at import: there is no second copy to keep in step.

Ownership rule (the C ABI contract, see go/capi/datago.h):
  * Inputs (config JSON, ...) are borrowed by the library for the duration of a call only.
  * Everything the library returns is C memory owned by the library, and it is released ONLY through
    the library's own free functions: strings (error messages, JSON) with ``datago_free``, samples
    (with their id, pixel/byte buffers and items) with ``datago_sample_free``. Python never frees
    that memory any other way, and never keeps a pointer into a sample without keeping the sample's
    owner (the ``ffi.gc`` object wrapping the ``datago_sample*``) alive.
  * A client is an opaque non-zero 64-bit handle released with ``datago_client_free``.
  * After a recovered Go panic the library is poisoned: every call fails with DATAGO_ERR_INTERNAL
    (DatagoError, ``code == "INTERNAL"``) naming the first panic.

Loading the library starts a Go runtime inside this process, so it happens lazily, on first use, and
never at ``import datago``. A Go runtime does not survive ``fork()``: see ``get_lib``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from cffi import FFI  # type: ignore[import-untyped,unused-ignore]

from .errors import ConfigError, DatagoError, LibraryLoadError

if TYPE_CHECKING:
    from collections.abc import Callable

    import numpy.typing as npt

__all__ = [
    "ABI_VERSION",
    "CDEF",
    "DATAGO_END",
    "DATAGO_ERR_CONFIG",
    "DATAGO_ERR_INTERNAL",
    "DATAGO_ERR_RUNTIME",
    "DATAGO_ERR_STATE",
    "DATAGO_ITEM_ADDITIONAL_IMAGE",
    "DATAGO_ITEM_BYTES",
    "DATAGO_ITEM_MASK",
    "DATAGO_OK",
    "DATAGO_TIMEOUT",
    "buffer_bytes",
    "buffer_memory",
    "buffer_view",
    "buckets",
    "catalog_free",
    "catalog_get",
    "catalog_ids",
    "catalog_len",
    "catalog_new",
    "catalog_skips",
    "catalog_stats",
    "check",
    "check_buffer",
    "sample_dtype",
    "check_pid",
    "current_pid",
    "client_batch_size",
    "client_delivered",
    "client_free",
    "client_new",
    "client_next",
    "client_next_batch",
    "client_next_many",
    "client_skips",
    "client_start",
    "client_state",
    "client_stats",
    "client_stop",
    "ffi",
    "get_lib",
    "header_path",
    "library_path",
    "library_version",
    "loaded",
    "next_many_buffers",
    "parse_header",
    "string",
]


# -- declarations: parsed from the hand-written contract, go/capi/datago.h ---------------------------


def header_path() -> Path:
    """datago.h: shipped next to this module in a wheel, else in the source checkout's go/capi/."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "datago.h", here.parent.parent / "go" / "capi" / "datago.h"):
        if candidate.is_file():
            return candidate
    raise LibraryLoadError(
        f"datago: the C header datago.h is missing (looked in {here} and the source tree's go/capi); "
        "the datago installation is incomplete: reinstall it"
    )


def parse_header(text: str) -> tuple[str, dict[str, int]]:
    """The cffi declarations of a C header and its integer ``#define``s.

    cffi's cdef takes no preprocessor lines, so they are removed: ``#define NAME <integer>`` becomes
    a constant, include guards and ``#include`` lines go (cffi knows the stdint types). Comments go too.
    """
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.DOTALL)
    text = re.sub(r"//[^\n]*", "", text)
    defines: dict[str, int] = {}
    kept: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped.startswith("#"):
            kept.append(line.rstrip())
            continue
        match = re.fullmatch(r"#\s*define\s+(\w+)\s+(-?\d+)", stripped)
        if match:
            defines[match.group(1)] = int(match.group(2))
    cdef = re.sub(r"\n{3,}", "\n\n", "\n".join(kept)).strip() + "\n"
    return cdef, defines


CDEF, _DEFINES = parse_header(header_path().read_text(encoding="utf-8"))

# The version of the header this package ships with, which the library must implement.
ABI_VERSION = _DEFINES["DATAGO_ABI_VERSION"]

DATAGO_OK = _DEFINES["DATAGO_OK"]
DATAGO_END = _DEFINES["DATAGO_END"]
DATAGO_TIMEOUT = _DEFINES["DATAGO_TIMEOUT"]
DATAGO_ERR_CONFIG = _DEFINES["DATAGO_ERR_CONFIG"]
DATAGO_ERR_RUNTIME = _DEFINES["DATAGO_ERR_RUNTIME"]
DATAGO_ERR_STATE = _DEFINES["DATAGO_ERR_STATE"]
DATAGO_ERR_INTERNAL = _DEFINES["DATAGO_ERR_INTERNAL"]

DATAGO_ITEM_MASK = _DEFINES["DATAGO_ITEM_MASK"]
DATAGO_ITEM_ADDITIONAL_IMAGE = _DEFINES["DATAGO_ITEM_ADDITIONAL_IMAGE"]
DATAGO_ITEM_BYTES = _DEFINES["DATAGO_ITEM_BYTES"]

# DatagoError.code: the status's name without its prefix ("CONFIG", "RUNTIME", "STATE", "INTERNAL").
_ERROR_CODES = {v: k.removeprefix("DATAGO_ERR_") for k, v in _DEFINES.items() if k.startswith("DATAGO_ERR_")}

ffi = FFI()
ffi.cdef(CDEF)

_LIBRARY_NAME = "libdatago.so"
_lock = threading.Lock()
_lib: Any = None
_loaded_pid: int | None = None

_BUILD_HINT = (
    "build it from a source checkout with `python3 build.py` (needs Go with cgo enabled and "
    "`apt-get install libvips-dev`), install a datago binary wheel, or set DATAGO_LIBRARY to the "
    "path of an existing libdatago.so"
)


def library_path() -> Path:
    """The library's path: ``$DATAGO_LIBRARY`` if set, else ``libdatago.so`` next to this module."""
    env = os.environ.get("DATAGO_LIBRARY")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent / _LIBRARY_NAME


def _bundled_libraries(path: Path) -> Path | None:
    """The directory of the libraries a manylinux wheel bundles beside ``path`` (None: not a wheel)."""
    libs = path.resolve().parent.parent / "datago.libs"
    return libs if libs.is_dir() else None


_REINSTALL = "reinstall it: `pip install --force-reinstall --no-deps <the datago wheel>`"


def explain_load_error(path: Path, error: BaseException) -> str:
    """A message naming the library, what is missing and the fix, when ``dlopen`` of ``path`` failed."""
    text = str(error)
    bundled = _bundled_libraries(path)
    glibc = re.search(r"version `(GLIBC_[\d.]+)' not found \(required by ([^)]+)\)", text)
    if glibc:
        import platform

        found = "-".join(platform.libc_ver()) or "an unknown C library"
        return (
            f"datago: cannot load {path}: {Path(glibc.group(2)).name} needs {glibc.group(1)}, but this "
            f"system has {found}. Use a datago wheel whose manylinux tag fits this system, or build "
            f"from the source distribution (`pip install --no-binary datago datago`, needs Go >= 1.22, "
            f"a C compiler and libvips-dev). Original error: {text}"
        )
    undefined = re.search(r"([\w./+-]+\.so[\w.]*): undefined symbol: (\w+)", text)
    if undefined:
        overrides = [v for v in ("LD_LIBRARY_PATH", "LD_PRELOAD") if os.environ.get(v)]
        hint = (
            f"{' and '.join(overrides)} may put another build of a library first: unset it, or "
            if overrides
            else ""
        )
        return (
            f"datago: cannot load {path}: {Path(undefined.group(1)).name} lacks the symbol "
            f"{undefined.group(2)}, so the libraries loaded do not belong together (a library of "
            f"another version was found first). Fix: {hint}"
            + (
                _REINSTALL
                if bundled
                else f"rebuild libdatago.so against the installed libvips ({_BUILD_HINT})"
            )
            + f". Original error: {text}"
        )
    missing = re.search(r"([\w.+-]+\.so[\w.]*): cannot open shared object file", text)
    if missing and Path(missing.group(1)).name != path.name:
        dep = missing.group(1)
        if bundled is not None:
            return (
                f"datago: cannot load {path}: the library {dep}, which the datago wheel bundles in "
                f"{bundled}, is missing: the installation is incomplete; {_REINSTALL}. "
                f"Original error: {text}"
            )
        if dep.startswith("libvips"):
            return (
                f"datago: cannot load {path}: the libvips runtime library ({dep}) is not installed. "
                "Install it with `apt-get install libvips42` (Debian/Ubuntu; `dnf install vips` on "
                "Fedora, `brew install vips` on macOS), or install the datago manylinux wheel "
                "(`make wheel`), which bundles libvips."
            )
        return (
            f"datago: cannot load {path}: the shared library {dep}, which libdatago.so depends on, "
            f"is not installed (libdatago.so needs the libvips runtime: `apt-get install libvips42`). "
            f"Original error: {text}"
        )
    return f"datago: cannot load {path}: {text}. If it is damaged or for another platform, {_BUILD_HINT}."


def _load(path: Path) -> Any:
    if not path.is_file():
        origin = "DATAGO_LIBRARY points to" if os.environ.get("DATAGO_LIBRARY") else "expected"
        raise LibraryLoadError(f"datago: native library not found ({origin} {path}); {_BUILD_HINT}.")
    try:
        lib = ffi.dlopen(str(path))
    except OSError as exc:
        raise LibraryLoadError(explain_load_error(path, exc)) from exc
    try:
        version = int(lib.datago_abi_version())
    except AttributeError as exc:  # the symbol is missing: not a datago library
        raise LibraryLoadError(f"datago: {path} is not a datago library (no datago_abi_version)") from exc
    if version != ABI_VERSION:
        raise LibraryLoadError(
            f"datago: {path} implements C ABI version {version}, but this Python package needs version "
            f"{ABI_VERSION}; the Python code and libdatago.so come from different datago versions. "
            f"Rebuild the library with `python3 build.py` or reinstall datago."
        )
    return lib


# This process's id, kept by a fork hook: os.getpid() is a system call, and every sample checks it.
_pid = os.getpid()


def _after_fork_in_child() -> None:
    global _pid
    _pid = os.getpid()


os.register_at_fork(after_in_child=_after_fork_in_child)


def current_pid() -> int:
    """os.getpid(), without the system call."""
    return _pid


def check_pid(owner_pid: int, what: str) -> None:
    """Refuse (without calling into the library) to use an object from a process other than its own."""
    pid = _pid
    if pid != owner_pid:
        raise DatagoError(
            f"{what} was created before fork() (in process {owner_pid}) and cannot be used in the "
            f"child process {pid}: create a new one in the child"
        )


def get_lib() -> Any:
    """The library of this process, loading it (and starting a Go runtime) on first use.

    A Go runtime does not survive ``fork()``: in the child only the forking thread exists, and a call
    into the parent's runtime waits forever for threads that are gone. A forked child therefore loads
    a private copy of the library (a second file, so ``dlopen`` maps a second, fresh runtime); objects
    created before the fork keep pointing at the old one and refuse to be used (``check_pid``).
    """
    global _lib, _loaded_pid
    pid = os.getpid()
    lib = _lib
    if lib is not None and _loaded_pid == pid:
        return lib
    with _lock:
        if _lib is None:
            _lib = _load(library_path())
        elif _loaded_pid != pid:
            _lib = _load_private_copy()
        else:
            return _lib
        _loaded_pid = pid
        _quiesce_at_fork(_lib, pid)
    return _lib


def _quiesce_at_fork(lib: Any, pid: int) -> None:
    """Keep libvips idle across fork() so that a child never inherits one of its locks held."""

    def before() -> None:
        if os.getpid() == pid:
            lib.datago_fork_prepare()

    def after_in_parent() -> None:
        if os.getpid() == pid:
            lib.datago_fork_parent()

    os.register_at_fork(before=before, after_in_parent=after_in_parent)


def _load_private_copy() -> Any:
    source = library_path()
    with tempfile.TemporaryDirectory(prefix="datago-") as tmp:
        copy = Path(tmp) / _LIBRARY_NAME
        shutil.copyfile(source, copy)
        lib = _load(copy)  # the mapping outlives the file
    lib.datago_fork_child_init()
    return lib


def loaded() -> bool:
    """Whether the library (and so a Go runtime) is loaded in this process (possibly before a fork)."""
    return _lib is not None


# -- status handling ---------------------------------------------------------------------------------


def _take_string(ptr: Any) -> str:
    """Decode a library-owned ``char *`` and free it with ``datago_free``. ``ptr`` must not be NULL."""
    try:
        raw: bytes = ffi.string(ptr)
        return raw.decode("utf-8", "replace")
    finally:
        get_lib().datago_free(ptr)


def _error_message(err: Any) -> str:
    if err[0] == ffi.NULL:
        return ""
    message = _take_string(err[0])
    err[0] = ffi.NULL
    return message


def check(status: int, err: Any, context: str = "") -> int:
    """Return ``status`` if it is not an error status, else raise the matching exception.

    ``err`` is the ``char **`` passed to the call; an error message it holds is freed here.
    """
    if status in (DATAGO_OK, DATAGO_END, DATAGO_TIMEOUT):
        if err[0] != ffi.NULL:  # not expected by the contract, but never leak it
            _error_message(err)
        return status
    message = _error_message(err) or "no message"
    if status == DATAGO_ERR_CONFIG:
        raise ConfigError(message)
    prefix = f"{context}: " if context else ""
    code = _ERROR_CODES.get(status)
    if status == DATAGO_ERR_RUNTIME:
        raise DatagoError(f"{prefix}{message}", code)
    if status == DATAGO_ERR_STATE:
        raise DatagoError(f"{prefix}invalid use: {message}", code)
    if status == DATAGO_ERR_INTERNAL:
        raise DatagoError(f"{prefix}internal error in datago (please report it): {message}", code)
    raise DatagoError(f"{prefix}unknown status {status} from libdatago: {message}")


def _call(function: str, *args: Any, context: str | None = None) -> int:
    """Call ``datago_<function>(*args, &err)`` and check its status (returned when not an error)."""
    err = ffi.new("char **")
    status = getattr(get_lib(), "datago_" + function)(*args, err)
    return check(status, err, "datago" if context is None else context)


def _json_call(function: str, handle: int) -> Any:
    """The JSON value of ``datago_<function>(handle, &out, &err)``."""
    out = ffi.new("char **")
    _call(function, handle, out, context=f"datago_{function}")
    return json.loads(_take_string(out[0])) if out[0] != ffi.NULL else None


def _owned(ptr: Any, free: Any) -> Any:
    """``ptr`` freed with ``free`` when Python drops it; in a forked child (another process than
    the one that made it) it is leaked instead of calling into a runtime that no longer runs."""
    pid = os.getpid()

    def _free(p: Any) -> None:
        if os.getpid() == pid:
            free(p)

    return ffi.gc(ptr, _free)


# -- clients -----------------------------------------------------------------------------------------


def client_new(config_json: str) -> int:
    """A new client's handle; raises ConfigError for an invalid configuration."""
    out = ffi.new("datago_client *")
    _call("client_new", config_json.encode("utf-8"), out, context="datago_client_new")
    return int(out[0])


def client_start(handle: int) -> None:
    _call("client_start", handle, context="datago_client_start")


def client_stop(handle: int) -> None:
    _call("client_stop", handle, context="datago_client_stop")


def client_free(handle: int, pid: int) -> None:
    """Stop the client and release its handle, if this is still the process ``pid`` that made it
    (in a forked child the parent's runtime is gone: nothing to do). Never raises."""
    if os.getpid() != pid or _lib is None:
        return
    with contextlib.suppress(Exception):  # called from finalizers
        get_lib().datago_client_free(handle)


def client_next(handle: int, timeout_ms: int) -> tuple[int, Any]:
    """(DATAGO_OK, the next sample, owned), or (DATAGO_END or DATAGO_TIMEOUT, None); raises for errors.

    cffi releases the GIL during the call: other Python threads keep running.
    """
    out = ffi.new("datago_sample **")
    status = _call("client_next", handle, timeout_ms, out)
    if status != DATAGO_OK:
        return status, None
    return status, _owned(out[0], get_lib().datago_sample_free)


def client_next_many(handle: int, timeout_ms: int, out: Any, count: Any) -> tuple[int, list[Any]]:
    """(DATAGO_OK, up to ``len(out)`` samples, owned), or (DATAGO_END or DATAGO_TIMEOUT, []).

    ``out`` (``datago_sample *[k]``) and ``count`` (``int32_t *``) are the caller's, reused from one
    call to the next (``next_many_buffers``): one library call and no cffi allocation per sample.
    """
    lib = get_lib()
    err = ffi.new("char **")
    status = check(lib.datago_client_next_many(handle, timeout_ms, len(out), out, count, err), err, "datago")
    if status != DATAGO_OK:
        return status, []
    # datago_sample_free is plain C (go/capi/free.c): safe in a forked child too, unlike _owned's
    # calls into Go, so no per-sample closure is needed.
    free = lib.datago_sample_free
    return status, [ffi.gc(out[k], free) for k in range(count[0])]


def client_delivered(handle: int, n: int) -> None:
    """Mark the first ``n`` samples of the last client_next_many calls delivered (resume state)."""
    _call("client_delivered", handle, n, context="datago_client_delivered")


def next_many_buffers(k: int) -> tuple[Any, Any]:
    """The ``out`` and ``count`` arguments of :func:`client_next_many`, for up to ``k`` samples."""
    return ffi.new("datago_sample *[]", k), ffi.new("int32_t *")


def client_next_batch(handle: int, timeout_ms: int) -> tuple[int, Any]:
    """As :func:`client_next`, for a client with batch_size: the next batch, owned."""
    out = ffi.new("datago_batch **")
    status = _call("client_next_batch", handle, timeout_ms, out)
    if status != DATAGO_OK:
        return status, None
    return status, _owned(out[0], get_lib().datago_batch_free)


def client_batch_size(handle: int) -> int:
    """The client's batch_size: 0 when it delivers samples, else the size of its batches."""
    out = ffi.new("int32_t *")
    _call("client_batch_size", handle, out, context="datago_client_batch_size")
    return int(out[0])


def client_state(handle: int) -> dict[str, Any]:
    state: dict[str, Any] = _json_call("client_state", handle)
    return state


def client_stats(handle: int) -> dict[str, Any]:
    return _json_call("client_stats", handle) or {}


def client_skips(handle: int) -> list[dict[str, Any]]:
    """The skip reports made since the last call (JSON objects with id, reason, message)."""
    return _json_call("client_skips", handle) or []


# -- catalogs (MapDataset) -----------------------------------------------------------------------------


def catalog_new(config_json: str) -> int:
    out = ffi.new("datago_catalog *")
    _call("catalog_new", config_json.encode("utf-8"), out, context="datago_catalog_new")
    return int(out[0])


def catalog_len(handle: int) -> int:
    n = int(get_lib().datago_catalog_len(handle))
    if n < 0:  # no message to read: the status calls say why
        catalog_stats(handle)
        raise DatagoError("datago_catalog_len: unknown or freed catalog handle")
    return n


def catalog_ids(handle: int) -> list[str]:
    ids: list[str] = _json_call("catalog_ids", handle)
    return ids


def catalog_get(handle: int, indices: list[int]) -> list[Any]:
    """The samples (owned) of the files at ``indices``, None for a file that could not be decoded."""
    n = len(indices)
    c_indices = ffi.new("int64_t[]", indices)
    out = ffi.new("datago_sample *[]", max(n, 1))
    _call("catalog_get", handle, c_indices, n, out, context="datago_catalog_get")
    free = get_lib().datago_sample_free
    return [None if out[k] == ffi.NULL else _owned(out[k], free) for k in range(n)]


def catalog_stats(handle: int) -> dict[str, Any]:
    return _json_call("catalog_stats", handle) or {}


def catalog_skips(handle: int) -> list[dict[str, Any]]:
    return _json_call("catalog_skips", handle) or []


def catalog_free(handle: int, pid: int) -> None:
    """Release the catalog's handle if this is still the process ``pid`` that made it."""
    if os.getpid() == pid and _lib is not None:
        get_lib().datago_catalog_free(handle)


# -- the rest of the ABI -------------------------------------------------------------------------------


def buckets(size: int, ratio: int, min_aspect_ratio: float, max_aspect_ratio: float) -> list[tuple[int, int]]:
    out = ffi.new("char **")
    _call("buckets", size, ratio, min_aspect_ratio, max_aspect_ratio, out, context="datago_buckets")
    return [(int(w), int(h)) for w, h in json.loads(_take_string(out[0]))]


def library_version() -> str:
    raw: bytes = ffi.string(get_lib().datago_version())
    return raw.decode("utf-8", "replace")


# -- reading what the library returned ---------------------------------------------------------------


def string(ptr: Any, errors: str = "surrogateescape") -> str:
    """The text of a library-owned ``char *`` (not freed: it belongs to its sample); "" for NULL."""
    if ptr == ffi.NULL:
        return ""
    raw: bytes = ffi.string(ptr)
    return raw.decode("utf-8", errors)


def sample_dtype(buf: Any) -> type[np.uint8] | type[np.uint16]:
    """The NumPy type of one sample of a pixel ``datago_buffer``: uint16 when its bit depth is 16
    (native 16-bit images, in the host's byte order), else uint8."""
    return np.uint16 if buf.bit_depth == 16 else np.uint8


def check_buffer(buf: Any, what: str | Callable[[], str], count: int = 1) -> tuple[int, int, int, int]:
    """(width, height, channels, length) of a ``datago_buffer`` holding ``count`` images, refusing
    a pixel buffer whose length does not match its shape and bit depth. ``what`` names the buffer in
    the error (a callable is only called then: naming costs more than checking)."""
    # cffi reads the int32_t and size_t fields as Python ints already.
    width, height, channels, length = buf.width, buf.height, buf.channels, buf.len
    if channels > 0:
        depth = buf.bit_depth
        if (
            (depth != 8 and depth != 16)
            or width < 0
            or height < 0
            or length != count * width * height * channels * (depth >> 3)
        ):
            what = what if isinstance(what, str) else what()
            shape = f"{width}x{height}x{channels}" if count == 1 else f"{count} x {width}x{height}x{channels}"
            raise DatagoError(
                f"{what}: inconsistent buffer from libdatago ({shape}, {depth}-bit, {length} bytes)"
            )
        if length and buf.data == ffi.NULL:
            what = what if isinstance(what, str) else what()
            raise DatagoError(f"{what}: NULL pixel buffer from libdatago")
    return width, height, channels, length


def buffer_view(owner: Any, buf: Any, shape: tuple[int, ...]) -> npt.NDArray[Any]:
    """A NumPy array of ``shape`` viewing ``buf``'s bytes without copying; it keeps ``owner`` (the
    sample or batch whose memory ``buf`` is) alive.

    The array's base is a cffi buffer over ``keep``, a pointer wrapped with ``ffi.gc`` whose (no-op)
    destructor closure references the owner: the owner can only be freed (by ``datago_sample_free``
    or ``datago_batch_free``) once every such array, and every view of it, is gone.
    """
    length = buf.len
    dtype = sample_dtype(buf)
    if length == 0:
        return np.zeros(shape, dtype=dtype)
    keep = ffi.gc(buf.data, lambda _p, _owner=owner: None)  # a new cdata: buf.data stays as it is
    return np.frombuffer(ffi.buffer(keep, length), dtype=dtype).reshape(shape)


def buffer_memory(buf: Any) -> Any:
    """A buffer-protocol object over ``buf``'s bytes, valid only while its owner lives (copy it)."""
    return ffi.buffer(buf.data, buf.len)


def buffer_bytes(buf: Any) -> bytes:
    """A copy of ``buf``'s bytes."""
    if buf.len == 0:
        return b""
    return bytes(ffi.buffer(buf.data, buf.len))
