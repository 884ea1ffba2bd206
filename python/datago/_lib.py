"""The only module that touches cffi: declarations, lazy loading and status handling of libdatago.so.

Ownership rule (the C ABI contract, see go/capi/datago.h):
  * Inputs (config JSON, ...) are borrowed by the library for the duration of a call only.
  * Everything the library returns is C memory owned by the library, and it is released ONLY through
    the library's own free functions: strings (error messages, JSON) with ``datago_free``, samples
    (with their id, pixel/byte buffers and items) with ``datago_sample_free``. Python never frees
    that memory any other way, and never keeps a pointer into a sample without keeping the sample's
    owner (the ``ffi.gc`` object wrapping the ``datago_sample*``) alive.
  * A client is an opaque non-zero 64-bit handle released with ``datago_client_free``.

Loading the library starts a Go runtime inside this process, so it happens lazily, on first use, and
never at ``import datago``. A Go runtime does not survive ``fork()``: see ``get_lib``.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

from cffi import FFI  # type: ignore[import-untyped,unused-ignore]

from .errors import ConfigError, DatagoError, LibraryLoadError

__all__ = [
    "ABI_VERSION",
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
    "check",
    "check_pid",
    "ffi",
    "get_lib",
    "library_path",
    "take_string",
]

# The #define lines of datago.h, kept as Python constants (cffi's cdef below has no preprocessor lines).
ABI_VERSION = 3

DATAGO_OK = 0
DATAGO_END = 1
DATAGO_TIMEOUT = 2
DATAGO_ERR_CONFIG = 3
DATAGO_ERR_RUNTIME = 4
DATAGO_ERR_STATE = 5
DATAGO_ERR_INTERNAL = 6

DATAGO_ITEM_MASK = 1
DATAGO_ITEM_ADDITIONAL_IMAGE = 2
DATAGO_ITEM_BYTES = 3

CDEF = """
typedef uint64_t datago_client;

typedef struct datago_buffer {
    uint8_t *data;
    size_t len;
    int32_t width;
    int32_t height;
    int32_t channels;
} datago_buffer;

typedef struct datago_item {
    char *name;
    int32_t kind;
    datago_buffer buf;
} datago_item;

typedef struct datago_sample {
    char *id;
    datago_buffer image;
    int32_t original_width;
    int32_t original_height;
    int32_t n_items;
    datago_item *items;
    char *meta_json;
} datago_sample;

typedef struct datago_batch {
    int32_t size;
    datago_buffer images;
    char **ids;
    int32_t *original_sizes;
    char **meta_json;
} datago_batch;

typedef uint64_t datago_catalog;

int32_t datago_abi_version(void);
char *datago_version(void);

int32_t datago_client_new(char *config_json, datago_client *out, char **err);
int32_t datago_client_start(datago_client client, char **err);
int32_t datago_client_next(datago_client client, int32_t timeout_ms, datago_sample **out, char **err);
void datago_sample_free(datago_sample *sample);
int32_t datago_client_next_batch(datago_client client, int32_t timeout_ms, datago_batch **out, char **err);
void datago_batch_free(datago_batch *batch);
int32_t datago_client_batch_size(datago_client client, int32_t *out, char **err);
int32_t datago_client_state(datago_client client, char **out_json, char **err);
int32_t datago_client_stats(datago_client client, char **out_json, char **err);
int32_t datago_client_stop(datago_client client, char **err);
void datago_client_free(datago_client client);
int32_t datago_client_skips(datago_client client, char **out_json, char **err);
int32_t datago_client_errors(datago_client client, char **out_json, char **err);
int32_t datago_buckets(int32_t default_image_size, int32_t downsampling_ratio, double min_aspect_ratio,
                       double max_aspect_ratio, char **out_json, char **err);
int32_t datago_catalog_new(char *config_json, datago_catalog *out, char **err);
int64_t datago_catalog_len(datago_catalog catalog);
int32_t datago_catalog_ids(datago_catalog catalog, char **out_json, char **err);
int32_t datago_catalog_get(datago_catalog catalog, int64_t *indices, int32_t n, datago_sample **out,
                           char **err);
int32_t datago_catalog_stats(datago_catalog catalog, char **out_json, char **err);
int32_t datago_catalog_skips(datago_catalog catalog, char **out_json, char **err);
int32_t datago_catalog_errors(datago_catalog catalog, char **out_json, char **err);
void datago_catalog_free(datago_catalog catalog);
void datago_free(void *p);
void datago_fork_prepare(void);
void datago_fork_parent(void);
void datago_fork_child_init(void);
"""

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


def explain_load_error(path: Path, error: BaseException) -> str:
    """A message saying exactly what is missing when ``dlopen`` of ``path`` failed with ``error``."""
    text = str(error)
    missing = re.search(r"([\w.+-]+\.so[\w.]*): cannot open shared object file", text)
    if missing and Path(missing.group(1)).name != path.name:
        dep = missing.group(1)
        if dep.startswith("libvips"):
            return (
                f"datago: cannot load {path}: the libvips runtime library ({dep}) is not installed. "
                "Install it with `apt-get install libvips42` (Debian/Ubuntu; `dnf install vips` on "
                "Fedora, `brew install vips` on macOS)."
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


def check_pid(owner_pid: int, what: str) -> None:
    """Refuse (without calling into the library) to use an object from a process other than its own."""
    pid = os.getpid()
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


def free_sample_in(pid: int) -> Any:
    """A destructor for samples of the library loaded in ``pid``; in another process (a forked
    child) it leaks the sample instead of calling into a runtime that no longer runs."""
    return _free_in(pid, get_lib().datago_sample_free)


def free_batch_in(pid: int) -> Any:
    """As :func:`free_sample_in`, for batches."""
    return _free_in(pid, get_lib().datago_batch_free)


def _free_in(pid: int, free: Any) -> Any:
    def _free(ptr: Any) -> None:
        if os.getpid() == pid:
            free(ptr)

    return _free


def take_string(ptr: Any) -> str:
    """Decode a library-owned ``char *`` and free it with ``datago_free``. ``ptr`` must not be NULL."""
    try:
        raw: bytes = ffi.string(ptr)
        return raw.decode("utf-8", "replace")
    finally:
        get_lib().datago_free(ptr)


def _error_message(err: Any) -> str:
    if err[0] == ffi.NULL:
        return ""
    message = take_string(err[0])
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
    if status == DATAGO_ERR_RUNTIME:
        raise DatagoError(f"{prefix}{message}")
    if status == DATAGO_ERR_STATE:
        raise DatagoError(f"{prefix}invalid use: {message}")
    if status == DATAGO_ERR_INTERNAL:
        raise DatagoError(f"{prefix}internal error in datago (please report it): {message}")
    raise DatagoError(f"{prefix}unknown status {status} from libdatago: {message}")
