"""A loopback stand-in for Photoroom's dataroom API: the subset datago uses, faithful to the server.

It implements what the dataroom Django REST API does for a read-only loader (see README.md,
"Dataroom HTTP source"): ``GET /api/images/`` (cursor pages sorted by id, the final page
``{"next": null, "results": []}``), ``/api/images/random/`` (hash-prefix sampling, or uniform with
``random_mode="uniform"``), ``/api/images/count/``, ``/api/images/<id>/`` and
``/api/stats/latent_types/``; DRF token auth answering 403 (never 401); ``fields`` /
``all_fields`` / ``include_fields`` / ``exclude_fields`` with ``id`` first; ``return_latents``; the
filters with the server's 400s for unknown tags, latent types, attributes or duplicate states; hash
partitions over 48 shards; and signed file URLs under ``/files/`` that need no token.

The data lives in SQLite (images, latent files, the LatentType, Tag and attribute-schema tables, the
tokens). ``populate()`` generates images of mixed aspect ratios and formats (RGB JPEG, RGBA PNG, 16-bit
PNG, 1-channel PNG) with masks (a rectangle at a known place), "masked_image" additional images, raw
``latent_vae`` .npy files and 768-float embeddings; ``add_image()`` serves existing files (the bench).

Every request is logged (route, raw query, parsed params, headers, status) and counted per route.
``add_fault()`` injects failures on chosen requests: statuses, latency, trickled, truncated or cut
bodies, connection resets, corrupt files, malformed JSON, pages without ``results`` or with results
missing keys, relative or dead ``next`` URLs.

    python tests/support/dataroom_server.py --images 200      # serves until Ctrl-C; prints the URL and token
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import hmac
import io
import json
import random
import socket
import sqlite3
import struct
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from fractions import Fraction
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import numpy as np
from PIL import Image, ImageDraw

API_MAX_PAGE_SIZE = 2000
DEFAULT_PAGE_SIZE = 100
NUM_SHARDS = 48
DEFAULT_TOKEN = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c"  # 40 hex characters, like dataroom's tokens
EMBEDDING_DIM = 768

DEFAULT_FIELDS = (
    "id",
    "source",
    "image_direct_url",
    "date_created",
    "date_updated",
    "author",
    "image_hash",
    "width",
    "height",
    "short_edge",
    "pixel_count",
    "aspect_ratio",
    "aspect_ratio_fraction",
    "original_url",
    "tags",
    "attributes",
    "datasets",
)
# The default fields are the first ones; the others are returned only when asked for.
AVAILABLE_FIELDS = (
    *DEFAULT_FIELDS,
    "latents",
    "coca_embedding",
    "duplicate_state",
    "thumbnail",
    "thumbnail_direct_url",
    "thumbnail_error",
    "related_images",
)

# Comparators valid for each attribute type (dataroom: backend/dataroom/choices.py).
_NUMERIC_CMP = {"", "ne", "lt", "lte", "gt", "gte"}
_STRING_CMP = {"", "ne", "match", "match_phrase", "prefix", "not_match", "not_match_phrase", "not_prefix"}
_CMP_BY_TYPE = {"int": _NUMERIC_CMP, "float": _NUMERIC_CMP, "string": _STRING_CMP, "bool": {"", "ne"}}
_ALL_CMP = _NUMERIC_CMP | _STRING_CMP

SCHEMA = """
CREATE TABLE tokens (key TEXT PRIMARY KEY, is_readonly INTEGER NOT NULL DEFAULT 0);
CREATE TABLE latent_types (name TEXT PRIMARY KEY, is_mask INTEGER NOT NULL);
CREATE TABLE tags (name TEXT PRIMARY KEY);
CREATE TABLE attribute_schema (name TEXT PRIMARY KEY, field_type TEXT NOT NULL, is_indexed INTEGER NOT NULL);
CREATE TABLE images (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,  -- insertion order: OpenSearch's _doc order
    id TEXT UNIQUE NOT NULL,
    source TEXT NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    image_hash TEXT NOT NULL,
    image_file TEXT NOT NULL,
    tags TEXT NOT NULL,           -- JSON list
    attributes TEXT NOT NULL,     -- JSON object
    duplicate_state INTEGER,      -- NULL (unprocessed), 1 original, 2 duplicate
    embedding BLOB,               -- float32 little-endian, or NULL
    embedding_author TEXT,
    author TEXT,
    original_url TEXT,
    date_created TEXT NOT NULL,
    shard INTEGER NOT NULL
);
CREATE TABLE latents (
    image_id TEXT NOT NULL,
    latent_type TEXT NOT NULL REFERENCES latent_types(name),
    file TEXT NOT NULL,
    PRIMARY KEY (image_id, latent_type)
);
CREATE TABLE files (path TEXT PRIMARY KEY, data BLOB, disk_path TEXT, content_type TEXT NOT NULL);
"""


def shard_of(image_id: str) -> int:
    """The index shard of a document: a stable hash of its id (OpenSearch routes by a hash of _id)."""
    return int.from_bytes(hashlib.sha256(image_id.encode()).digest()[:8], "big") % NUM_SHARDS


def aspect_ratio_fraction(width: int, height: int) -> str:
    f = Fraction(width / height).limit_denominator(10)
    return f"{f.numerator}:{f.denominator}"


class BadRequestError(Exception):
    """A DRF validation error: 400 with ``body`` (a list or a dict of lists)."""

    def __init__(self, body: Any) -> None:
        super().__init__(body)
        self.body = body


# ------------------------------------------------------------------------------------------- store


class DataroomStore:
    """The SQLite store (one connection, serialised by a lock)."""

    def __init__(self, path: str | Path = ":memory:") -> None:
        self.lock = threading.RLock()
        self.db = sqlite3.connect(str(path), check_same_thread=False)
        self.db.row_factory = sqlite3.Row
        self.db.executescript(SCHEMA)

    def query(self, sql: str, args: Iterable[Any] = ()) -> list[sqlite3.Row]:
        with self.lock:
            return self.db.execute(sql, tuple(args)).fetchall()

    def execute(self, sql: str, args: Iterable[Any] = ()) -> None:
        with self.lock:
            self.db.execute(sql, tuple(args))
            self.db.commit()

    def put_file(
        self, path: str, data: bytes | None, content_type: str, disk_path: str | None = None
    ) -> None:
        self.execute(
            "INSERT OR REPLACE INTO files (path, data, disk_path, content_type) VALUES (?, ?, ?, ?)",
            (path, data, disk_path, content_type),
        )

    def file(self, path: str) -> tuple[bytes, str] | None:
        rows = self.query("SELECT data, disk_path, content_type FROM files WHERE path = ?", (path,))
        if not rows:
            return None
        data, disk_path, ctype = rows[0]
        if data is None:
            data = Path(disk_path).read_bytes()
        return bytes(data), ctype


# ------------------------------------------------------------------------------------------ faults


@dataclass
class Fault:
    """A failure injected into the responses of some requests.

    kind:
      status          answer ``status`` with ``body`` (default: DRF JSON for 4xx, an HTML page for 5xx)
      latency         wait ``delay`` seconds before answering normally
      slow_body       send the headers, then the body ``chunk`` bytes at a time, ``delay`` s apart
      truncate        announce the full Content-Length, send half of the body, close the connection
      chunked_cut     send the body chunked and close before the last chunk
      reset           close the connection with a TCP reset, without answering
      corrupt         (files) answer 200 with random bytes of the file's length, or with its first
                      half when ``body == b"truncate"``
      malformed_json  answer 200 with a body that is not JSON (``body``, default an HTML page)
      no_results      answer 200 ``{"next": null}`` (JSON without ``results``)
      missing_keys    answer the page with ``drop_keys`` removed from every result
      relative_next   answer the page with a relative ``next``
      dead_next       answer the page with ``next`` on a port nothing listens on
    route: "page" (images + random), "images", "random", "count", "detail", "file", or "any".
    requests: 1-based indices, among the requests this fault matches, that it applies to (None: all).
    probability: chance of applying to a matching request (the server's RNG is seeded).
    image_id: only the requests for this image (its files, or its detail route).
    """

    kind: str
    route: str = "page"
    requests: Collection[int] | None = None
    probability: float = 1.0
    image_id: str | None = None
    status: int = 500
    body: bytes | str | None = None
    delay: float = 0.0
    chunk: int = 64
    headers: dict[str, str] = field(default_factory=dict)
    drop_keys: tuple[str, ...] = ("id",)
    seen: int = 0  # requests matched so far
    hits: int = 0  # requests it was applied to


_ROUTE_GROUPS = {"page": {"images", "random"}, "any": None}


# ------------------------------------------------------------------------------------------ server


@dataclass
class RequestRecord:
    route: str
    method: str
    path: str
    query: str
    params: dict[str, list[str]]
    headers: dict[str, str]
    status: int = 0
    fault: str | None = None
    time: float = 0.0
    client: str = ""  # the client's address and port: one per connection


@dataclass
class GeneratedImage:
    """What ``populate`` made for one image (the test's ground truth, beside the store)."""

    id: str
    width: int
    height: int
    fmt: str
    source: str
    tags: list[str]
    attributes: dict[str, Any]
    duplicate_state: int | None
    embedding: np.ndarray | None
    latents: dict[str, bytes]
    mask_box: tuple[int, int, int, int] | None  # (left, top, right, bottom) of the mask's rectangle
    pixels: np.ndarray  # the image as RGB uint8 (what datago should decode, before processing)


class DataroomServer:
    """The API on ``http://127.0.0.1:<port>/api/``; use as a context manager or start()/stop()."""

    def __init__(
        self,
        db_path: str | Path = ":memory:",
        tokens: Iterable[str] = (DEFAULT_TOKEN,),
        random_mode: str = "prefix",
        seed: int = 0,
        signed_urls: bool = True,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        if random_mode not in ("prefix", "uniform"):
            raise ValueError("random_mode must be 'prefix' or 'uniform'")
        self.store = DataroomStore(db_path)
        for key in tokens:
            self.store.execute("INSERT INTO tokens (key) VALUES (?)", (key,))
        self.token = next(iter(tokens), DEFAULT_TOKEN)
        self.random_mode = random_mode
        self.signed_urls = signed_urls
        self.rng = random.Random(seed)
        self._secret = hashlib.sha256(f"secret-{seed}".encode()).digest()
        self._lock = threading.Lock()
        self.requests: list[RequestRecord] = []
        self._in_flight = 0
        self.counts: Counter[str] = Counter()
        self.faults: list[Fault] = []
        self.generated: dict[str, GeneratedImage] = {}
        self._httpd = _QuietServer((host, port), _make_handler(self))
        self._thread: threading.Thread | None = None

    # -- lifecycle --------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """The value of DATAROOM_API_URL / source_config.api_url."""
        return f"{self.origin}/api/"

    def start(self) -> DataroomServer:
        if self._thread is None:
            self._thread = threading.Thread(target=self._httpd.serve_forever, name="dataroom", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> DataroomServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- schema and data --------------------------------------------------------------------------

    def add_latent_type(self, name: str, is_mask: bool) -> None:
        self.store.execute("INSERT OR REPLACE INTO latent_types VALUES (?, ?)", (name, int(is_mask)))

    def add_tag(self, name: str) -> None:
        self.store.execute("INSERT OR IGNORE INTO tags VALUES (?)", (name,))

    def add_attribute(self, name: str, field_type: str, is_indexed: bool = True) -> None:
        self.store.execute(
            "INSERT OR REPLACE INTO attribute_schema VALUES (?, ?, ?)", (name, field_type, int(is_indexed))
        )

    def add_image(
        self,
        image_id: str,
        width: int,
        height: int,
        data: bytes | None = None,
        ext: str = "jpg",
        disk_path: str | Path | None = None,
        source: str = "test",
        tags: Iterable[str] = (),
        attributes: dict[str, Any] | None = None,
        duplicate_state: int | None = None,
        embedding: np.ndarray | None = None,
        latents: dict[str, tuple[bytes, str]] | None = None,
        image_hash: str | None = None,
    ) -> None:
        """Store one image; its file is ``data`` or the file at ``disk_path`` (read per request)."""
        image_file = f"images/{image_id}/original.{ext}"
        ctype = {"jpg": "image/jpeg", "jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp"}.get(
            ext, "application/octet-stream"
        )
        self.store.put_file(image_file, data, ctype, str(disk_path) if disk_path is not None else None)
        if image_hash is None:
            image_hash = (
                "sha256:" + hashlib.sha256(data if data is not None else image_id.encode()).hexdigest()
            )
        for tag in tags:
            self.add_tag(tag)
        emb = None if embedding is None else np.asarray(embedding, dtype="<f4").tobytes()
        self.store.execute(
            "INSERT INTO images (id, source, width, height, image_hash, image_file, tags, attributes, "
            "duplicate_state, embedding, embedding_author, author, original_url, date_created, shard) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                image_id,
                source,
                width,
                height,
                image_hash,
                image_file,
                json.dumps(list(tags)),
                json.dumps(attributes or {}),
                duplicate_state,
                emb,
                "coca" if emb is not None else None,
                "tester",
                f"https://example.com/{image_id}.{ext}",
                "2024-01-02T03:04:05.000000Z",
                shard_of(image_id),
            ),
        )
        for latent_type, (blob, lext) in (latents or {}).items():
            path = f"images/{image_id}/latent_{latent_type}.{lext}"
            lctype = "image/png" if lext == "png" else "application/octet-stream"
            self.store.put_file(path, blob, lctype)
            self.store.execute("INSERT INTO latents VALUES (?, ?, ?)", (image_id, latent_type, path))

    def populate(self, count: int, seed: int = 0, short_edge: int = 48) -> list[GeneratedImage]:
        """Generate ``count`` images with masks, additional images, latents and embeddings."""
        for name, is_mask in (("segmentation_mask", True), ("masked_image", False), ("latent_vae", False)):
            self.add_latent_type(name, is_mask)
        for tag in ("photo", "art", "people", "outdoor"):
            self.add_tag(tag)
        for name, ftype, indexed in (
            ("aesthetic_score", "float", True),
            ("caption", "string", True),
            ("n_faces", "int", True),
            ("is_photo", "bool", True),
            ("big_number", "int", True),
            ("exif", "object", False),
        ):
            self.add_attribute(name, ftype, indexed)
        rng = np.random.default_rng(seed)
        ratios = [(1, 1), (2, 1), (1, 2), (4, 3), (4, 1), (3, 4)]
        formats = ["JPEG", "PNG_RGBA", "PNG16", "PNG_L", "JPEG", "PNG"]
        sources = ["unsplash", "laion", "internal"]
        tags_all = ["photo", "art", "people", "outdoor"]
        made = []
        for i in range(count):
            rw, rh = ratios[i % len(ratios)]
            scale = short_edge / min(rw, rh)
            w, h = int(round(rw * scale)), int(round(rh * scale))
            image_id = hashlib.sha1(f"{seed}-{i}".encode()).hexdigest()[:20]
            pixels = _photo(w, h, rng)
            fmt = formats[i % len(formats)]
            data, ext, decoded = _encode(pixels, fmt)
            tags = [t for j, t in enumerate(tags_all) if (i >> j) & 1]
            attributes: dict[str, Any] = {
                "aesthetic_score": round(float(rng.uniform(3, 8)), 3),
                "caption": f"image number {i}",
                "n_faces": int(i % 4),
                "is_photo": bool(i % 2 == 0),
                "big_number": 2**60 + i,
                "exif": {"make": "Acme", "iso": 100 * (i % 5 + 1), "flags": [True, None, 1.5]},
            }
            if i % 5 == 4:
                del attributes["n_faces"]
            duplicate_state = [None, 1, 2][i % 3]
            embedding = None if i % 7 == 6 else rng.standard_normal(EMBEDDING_DIM).astype(np.float32)
            latents: dict[str, tuple[bytes, str]] = {}
            mask_box = None
            if i % 4 != 3:
                mask_box = (w // 5, h // 4, w // 5 + max(w // 3, 4), h // 4 + max(h // 3, 4))
                mask = Image.new("L", (w, h), 0)
                ImageDraw.Draw(mask).rectangle(
                    (mask_box[0], mask_box[1], mask_box[2] - 1, mask_box[3] - 1), fill=255
                )
                latents["segmentation_mask"] = (_png(mask), "png")
                if i % 2 == 0:
                    masked = decoded.copy()
                    masked[np.asarray(mask) == 0] = 0
                    latents["masked_image"] = (_png(Image.fromarray(masked)), "png")
            if i % 5 != 4:
                buf = io.BytesIO()
                np.save(buf, rng.standard_normal((4, h // 8 or 1, w // 8 or 1)).astype(np.float16))
                latents["latent_vae"] = (buf.getvalue(), "npy")
            source = sources[i % len(sources)]
            self.add_image(
                image_id,
                w,
                h,
                data=data,
                ext=ext,
                source=source,
                tags=tags,
                attributes=attributes,
                duplicate_state=duplicate_state,
                embedding=embedding,
                latents=latents,
                image_hash="sha256:" + hashlib.sha256(decoded.tobytes()).hexdigest(),
            )
            gen = GeneratedImage(
                id=image_id,
                width=w,
                height=h,
                fmt=fmt,
                source=source,
                tags=tags,
                attributes=attributes,
                duplicate_state=duplicate_state,
                embedding=embedding,
                latents={k: v[0] for k, v in latents.items()},
                mask_box=mask_box,
                pixels=decoded,
            )
            self.generated[image_id] = gen
            made.append(gen)
        return made

    def serve_directory(self, directory: str | Path, source: str = "files") -> list[str]:
        """Serve every image file of ``directory`` (read from disk at each request); returns the ids."""
        exts = {".jpg": "jpg", ".jpeg": "jpg", ".png": "png", ".webp": "webp"}
        ids = []
        for path in sorted(Path(directory).iterdir()):
            ext = exts.get(path.suffix.lower())
            if ext is None or not path.is_file():
                continue
            with Image.open(path) as im:
                width, height = im.size
            image_id = path.stem
            self.add_image(image_id, width, height, disk_path=path, ext=ext, source=source)
            ids.append(image_id)
        return ids

    def ids(self) -> list[str]:
        return [r["id"] for r in self.store.query("SELECT id FROM images ORDER BY id")]

    # -- request log and faults -------------------------------------------------------------------

    def add_fault(self, kind: str, **kw: Any) -> Fault:
        fault = Fault(kind=kind, **kw)
        with self._lock:
            self.faults.append(fault)
        return fault

    def wait_idle(self, quiet: float = 0.1, timeout: float = 10.0) -> None:
        """Wait until no request is being answered and none arrived for ``quiet`` seconds (the late
        requests of a client that was just closed)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                busy = self._in_flight > 0
                last = self.requests[-1].time if self.requests else 0.0
            if not busy and time.time() - last >= quiet:
                return
            time.sleep(0.02)

    def clear(self) -> None:
        """Forget the request log, the counters and the faults, once the server is idle."""
        self.wait_idle()
        with self._lock:
            self.requests.clear()
            self.counts.clear()
            self.faults.clear()

    def requests_for(self, route: str) -> list[RequestRecord]:
        with self._lock:
            group = _ROUTE_GROUPS.get(route, {route})
            return [r for r in self.requests if group is None or r.route in group]

    def _log(self, rec: RequestRecord) -> None:
        with self._lock:
            self.requests.append(rec)
            self.counts[rec.route] += 1
            self._in_flight += 1

    def _done(self) -> None:
        with self._lock:
            self._in_flight -= 1

    def _pick_fault(self, route: str, image_id: str | None) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                group = _ROUTE_GROUPS.get(fault.route, {fault.route})
                if group is not None and route not in group:
                    continue
                if fault.image_id is not None and fault.image_id != image_id:
                    continue
                fault.seen += 1
                if fault.requests is not None and fault.seen not in fault.requests:
                    continue
                if fault.probability < 1.0 and self.rng.random() >= fault.probability:
                    continue
                fault.hits += 1
                return fault
        return None

    # -- signed file URLs -------------------------------------------------------------------------

    def file_url(self, path: str) -> str:
        url = f"{self.origin}/files/{path}"
        if self.signed_urls:
            sig = hmac.new(self._secret, path.encode(), hashlib.sha256).hexdigest()[:32]
            url += "?" + urlencode({"X-Amz-Expires": "86400", "X-Amz-Signature": sig})
        return url

    def _signature_ok(self, path: str, params: dict[str, list[str]]) -> bool:
        if not self.signed_urls:
            return True
        want = hmac.new(self._secret, path.encode(), hashlib.sha256).hexdigest()[:32]
        return hmac.compare_digest(params.get("X-Amz-Signature", [""])[0], want)

    # -- the API ----------------------------------------------------------------------------------

    def authenticate(self, header: str | None) -> str | None:
        """None when the token is valid, else the 403 detail (DRF's messages)."""
        if not header:
            return "Authentication credentials were not provided."
        parts = header.split()
        if not parts or parts[0].lower() != "token":
            return "Authentication credentials were not provided."  # not a token header: no auth tried
        if len(parts) == 1:
            return "Invalid token header. No credentials provided."
        if len(parts) > 2:
            return "Invalid token header. Token string should not contain spaces."
        if not self.store.query("SELECT 1 FROM tokens WHERE key = ?", (parts[1],)):
            return "Invalid token."
        return None

    def _fields(self, params: dict[str, list[str]]) -> list[str]:
        def names(key: str) -> list[str]:
            return [n.strip() for v in params.get(key, []) for n in v.split(",") if n.strip()]

        if "fields" in params:
            wanted = names("fields")
        elif _bool(params, "all_fields"):
            wanted = list(AVAILABLE_FIELDS)
        else:
            wanted = list(DEFAULT_FIELDS)
        wanted += names("include_fields")
        excluded = set(names("exclude_fields")) - {"id"}
        out = ["id"]
        for n in wanted:
            if n in AVAILABLE_FIELDS and n not in out and n not in excluded:
                out.append(n)
        return out

    def _filter(self, params: dict[str, list[str]]) -> Callable[[sqlite3.Row, set[str]], bool]:
        """A predicate over (image row, its latent types); raises BadRequestError like the server."""
        preds: list[Callable[[sqlite3.Row, list[str], dict[str, Any], set[str]], bool]] = []

        def lst(key: str) -> list[str] | None:
            if key not in params:
                return None
            return [x.strip() for v in params[key] for x in v.split(",") if x.strip()]

        sources, sources_ne = lst("sources"), lst("sources__ne")
        if sources is not None:
            preds.append(lambda r, t, a, lt: r["source"] in sources)
        if sources_ne is not None:
            preds.append(lambda r, t, a, lt: r["source"] not in sources_ne)
        if "source" in params:
            src = params["source"][0]
            preds.append(lambda r, t, a, lt: r["source"] == src)
        if "source__empty" in params:
            empty = _bool(params, "source__empty")
            preds.append(lambda r, t, a, lt: (r["source"] == "") == empty)

        known_tags = {r["name"] for r in self.store.query("SELECT name FROM tags")}
        for key in ("tags", "tags__all", "tags__ne", "tags__ne_all"):
            values = lst(key)
            if values is None:
                continue
            if any(v not in known_tags for v in values):
                raise BadRequestError(["One or more tags do not exist"])
            vs = set(values)
            if key == "tags":
                preds.append(lambda r, t, a, lt, vs=vs: bool(vs & set(t)))
            elif key == "tags__all":
                preds.append(lambda r, t, a, lt, vs=vs: vs <= set(t))
            elif key == "tags__ne":
                preds.append(lambda r, t, a, lt, vs=vs: not (vs & set(t)))
            else:
                preds.append(lambda r, t, a, lt, vs=vs: not vs <= set(t))
        if "tags__empty" in params:
            empty = _bool(params, "tags__empty")
            preds.append(lambda r, t, a, lt: (len(t) == 0) == empty)

        schema = {
            r["name"]: (r["field_type"], bool(r["is_indexed"]))
            for r in self.store.query("SELECT * FROM attribute_schema")
        }
        for key in ("has_attributes", "lacks_attributes"):
            values = lst(key)
            if values is None:
                continue
            for v in values:
                if v not in schema:
                    raise BadRequestError({key: [f"Attribute '{v}' does not exist"]})
                if schema[v][0] == "object":
                    raise BadRequestError({key: [f"Attribute '{v}' is an object"]})
            want = key == "has_attributes"
            preds.append(lambda r, t, a, lt, vs=values, want=want: all((v in a) == want for v in vs))
        for spec in lst("attributes") or []:
            preds.append(_attribute_pred(spec, schema))

        known_latents = {r["name"] for r in self.store.query("SELECT name FROM latent_types")}
        for key in ("has_latents", "has_masks", "lacks_latents", "lacks_masks"):
            values = lst(key)
            if values is None:
                continue
            if any(v not in known_latents for v in values):
                raise BadRequestError({key: ["One or more latent types do not exist"]})
            if key.startswith("has_"):
                preds.append(lambda r, t, a, lt, vs=values: all(v in lt for v in vs))
            else:
                preds.append(lambda r, t, a, lt, vs=values: not any(v in lt for v in vs))

        for name, value_of in (
            ("short_edge", lambda r: min(r["width"], r["height"])),
            ("pixel_count", lambda r: r["width"] * r["height"]),
            ("aspect_ratio", lambda r: r["width"] / r["height"]),
        ):
            for suffix, op in (
                ("", lambda x, y: x == y),
                ("__gt", lambda x, y: x > y),
                ("__gte", lambda x, y: x >= y),
                ("__lt", lambda x, y: x < y),
                ("__lte", lambda x, y: x <= y),
            ):
                key = name + suffix
                if key not in params:
                    continue
                raw = params[key][0]
                try:
                    bound: float = float(raw) if name == "aspect_ratio" else int(raw)
                except ValueError:
                    kind = "number" if name == "aspect_ratio" else "integer"
                    raise BadRequestError({key: [f"A valid {kind} is required."]}) from None
                preds.append(lambda r, t, a, lt, f=value_of, op=op, b=bound: op(f(r), b))
        if "aspect_ratio_fraction" in params:
            frac = params["aspect_ratio_fraction"][0]
            preds.append(lambda r, t, a, lt: aspect_ratio_fraction(r["width"], r["height"]) == frac)

        if "duplicate_state" in params:
            raw = params["duplicate_state"][0]
            states = {"None": None, "1": 1, "2": 2}
            if raw not in states:
                raise BadRequestError({"duplicate_state": [f'"{raw}" is not a valid choice.']})
            state = states[raw]
            preds.append(lambda r, t, a, lt: r["duplicate_state"] == state)
        if "coca_embedding__empty" in params:
            empty = _bool(params, "coca_embedding__empty")
            preds.append(lambda r, t, a, lt: (r["embedding"] is None) == empty)

        def predicate(row: sqlite3.Row, latent_types: set[str]) -> bool:
            tags = json.loads(row["tags"])
            attrs = json.loads(row["attributes"])
            return all(p(row, tags, attrs, latent_types) for p in preds)

        return predicate

    def _partition(self, params: dict[str, list[str]]) -> list[int] | None:
        has_n, has_p = "partitions_count" in params, "partition" in params
        if not has_n and not has_p:
            return None
        if has_n != has_p:
            raise BadRequestError(['Both "partitions_count" and "partition" must be provided'])
        try:
            n = int(params["partitions_count"][0])
        except ValueError:
            raise BadRequestError(['"partitions_count" should be an integer']) from None
        if not 2 <= n <= NUM_SHARDS:
            raise BadRequestError([f'"partitions_count" should be between 2 and {NUM_SHARDS}'])
        try:
            p = int(params["partition"][0])
        except ValueError:
            raise BadRequestError(['"partition" should be an integer']) from None
        if not 0 <= p < n:
            raise BadRequestError([f'"partition" should be between 0 and {n - 1}'])
        return list(range(p, NUM_SHARDS, n))

    def _latents_of(self, ids: list[str]) -> dict[str, list[sqlite3.Row]]:
        out: dict[str, list[sqlite3.Row]] = {i: [] for i in ids}
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self.store.query(
                "SELECT l.image_id, l.latent_type, l.file, t.is_mask FROM latents l "
                f"JOIN latent_types t ON t.name = l.latent_type WHERE l.image_id IN ({marks}) "
                "ORDER BY l.image_id, l.latent_type",
                chunk,
            )
            for r in rows:
                out[r["image_id"]].append(r)
        return out

    def _serialize(
        self, row: sqlite3.Row, fields: list[str], latents: list[sqlite3.Row], return_latents: set[str] | None
    ) -> dict[str, Any]:
        w, h = row["width"], row["height"]
        out: dict[str, Any] = {}
        for f in fields:
            if f == "id":
                out[f] = row["id"]
            elif f == "source":
                out[f] = row["source"]
            elif f == "image_direct_url":
                out[f] = self.file_url(row["image_file"])
            elif f in ("date_created", "date_updated"):
                out[f] = row["date_created"]
            elif f == "author":
                out[f] = row["author"]
            elif f == "image_hash":
                out[f] = row["image_hash"]
            elif f in ("width", "height"):
                out[f] = row[f]
            elif f == "short_edge":
                out[f] = min(w, h)
            elif f == "pixel_count":
                out[f] = w * h
            elif f == "aspect_ratio":
                out[f] = w / h
            elif f == "aspect_ratio_fraction":
                out[f] = aspect_ratio_fraction(w, h)
            elif f == "original_url":
                out[f] = row["original_url"]
            elif f == "tags":
                out[f] = json.loads(row["tags"])
            elif f == "attributes":
                out[f] = json.loads(row["attributes"])
            elif f == "datasets":
                out[f] = []
            elif f == "latents":
                out[f] = [
                    {
                        "latent_type": lt["latent_type"],
                        "file_direct_url": self.file_url(lt["file"]),
                        "is_mask": bool(lt["is_mask"]),
                    }
                    for lt in latents
                    if return_latents is None or lt["latent_type"] in return_latents
                ]
            elif f == "coca_embedding":
                blob = row["embedding"]
                out[f] = (
                    None
                    if blob is None
                    else {
                        "vector": [float(x) for x in np.frombuffer(blob, dtype="<f4")],
                        "author": row["embedding_author"],
                    }
                )
            elif f == "duplicate_state":
                out[f] = row["duplicate_state"]
            elif f in ("thumbnail", "thumbnail_direct_url", "thumbnail_error"):
                out[f] = None
            elif f == "related_images":
                out[f] = {}
        return out

    def _page_size(self, params: dict[str, list[str]]) -> int:
        if "page_size" not in params:
            return DEFAULT_PAGE_SIZE
        try:
            size = int(params["page_size"][0])
        except ValueError:
            raise BadRequestError({"page_size": ["A valid integer is required."]}) from None
        if size > API_MAX_PAGE_SIZE:
            raise BadRequestError(
                {"page_size": [f"Ensure this value is less than or equal to {API_MAX_PAGE_SIZE}."]}
            )
        if size < 1:
            raise BadRequestError({"page_size": ["Ensure this value is greater than or equal to 1."]})
        return size

    def _return_latents(self, params: dict[str, list[str]]) -> set[str] | None:
        if "return_latents" not in params:
            return None
        return {x.strip() for v in params["return_latents"] for x in v.split(",") if x.strip()}

    def _matching(
        self, params: dict[str, list[str]], shards: list[int] | None, cursor: str | None, order: str
    ) -> Iterable[tuple[sqlite3.Row, list[sqlite3.Row]]]:
        predicate = self._filter(params)
        sql, args = "SELECT * FROM images WHERE 1", []
        if cursor is not None:
            sql += " AND id > ?"
            args.append(cursor)
        if shards is not None:
            sql += f" AND shard IN ({','.join('?' * len(shards))})"
            args += shards
        sql += f" ORDER BY {order}"
        rows = self.store.query(sql, args)
        lats = self._latents_of([r["id"] for r in rows])
        for row in rows:
            if predicate(row, {lt["latent_type"] for lt in lats[row["id"]]}):
                yield row, lats[row["id"]]

    def list_images(self, params: dict[str, list[str]], host: str, path: str) -> dict[str, Any]:
        fields, size = self._fields(params), self._page_size(params)
        shards = self._partition(params)
        return_latents = self._return_latents(params)
        cursor = params["cursor"][0] if "cursor" in params else None
        results = []
        for row, lats in self._matching(params, shards, cursor, "id"):
            results.append(self._serialize(row, fields, lats, return_latents))
            if len(results) == size:
                break
        next_url = None
        if results:
            query = {k: v for k, v in params.items() if k != "cursor"}
            query["cursor"] = [results[-1]["id"]]
            next_url = f"http://{host}{path}?{urlencode(query, doseq=True)}"
        return {"next": next_url, "results": results}

    def random_images(self, params: dict[str, list[str]]) -> dict[str, Any]:
        fields, size = self._fields(params), self._page_size(params)
        return_latents = self._return_latents(params)
        prefix_length = _int_in(params, "prefix_length", 5, 1, 64)
        num_prefixes = _int_in(params, "num_prefixes", 100, 1, 300)
        matching = list(self._matching(params, None, None, "seq"))  # no partitioning for random
        with self._lock:
            if self.random_mode == "uniform":
                picked = self.rng.sample(matching, min(size, len(matching)))
            else:
                prefixes = tuple(
                    "sha256:" + "".join(self.rng.choice("0123456789abcdef") for _ in range(prefix_length))
                    for _ in range(num_prefixes)
                )
                picked = [m for m in matching if m[0]["image_hash"].startswith(prefixes)][:size]
        return {"next": None, "results": [self._serialize(r, fields, lt, return_latents) for r, lt in picked]}

    def count_images(self, params: dict[str, list[str]]) -> dict[str, Any]:
        shards = self._partition(params)
        return {"count": sum(1 for _ in self._matching(params, shards, None, "seq"))}

    def image_detail(self, image_id: str, params: dict[str, list[str]]) -> dict[str, Any] | None:
        rows = self.store.query("SELECT * FROM images WHERE id = ?", (image_id,))
        if not rows:
            return None
        lats = self._latents_of([image_id])[image_id]
        return self._serialize(rows[0], self._fields(params), lats, self._return_latents(params))

    def latent_types(self) -> list[dict[str, Any]]:
        rows = self.store.query(
            "SELECT t.name, t.is_mask, COUNT(l.image_id) AS n FROM latent_types t "
            "LEFT JOIN latents l ON l.latent_type = t.name GROUP BY t.name ORDER BY t.name"
        )
        return [{"name": r["name"], "is_mask": bool(r["is_mask"]), "image_count": r["n"]} for r in rows]


def _bool(params: dict[str, list[str]], key: str) -> bool:
    value = params.get(key, [""])[0].strip().lower()
    if value in ("true", "1", "yes", "on"):
        return True
    if value in ("false", "0", "no", "off", ""):
        return False
    raise BadRequestError({key: ["Must be a valid boolean."]})


def _int_in(params: dict[str, list[str]], key: str, default: int, lo: int, hi: int) -> int:
    if key not in params:
        return default
    try:
        value = int(params[key][0])
    except ValueError:
        raise BadRequestError({key: ["A valid integer is required."]}) from None
    if value < lo:
        raise BadRequestError({key: [f"Ensure this value is greater than or equal to {lo}."]})
    if value > hi:
        raise BadRequestError({key: [f"Ensure this value is less than or equal to {hi}."]})
    return value


def _attribute_pred(
    spec: str, schema: dict[str, tuple[str, bool]]
) -> Callable[[sqlite3.Row, list[str], dict[str, Any], set[str]], bool]:
    """The predicate of one ``name[__cmp]:value`` attribute filter."""
    if ":" not in spec:
        raise BadRequestError({"attributes": [f"Invalid attribute filter '{spec}': expected name:value"]})
    key, raw = spec.split(":", 1)
    name, cmp = key, ""
    for c in sorted(_ALL_CMP - {""}, key=len, reverse=True):
        if key.endswith("__" + c):
            name, cmp = key[: -len(c) - 2], c
            break
    if name not in schema or not schema[name][1]:
        raise BadRequestError({"attributes": [f"Attribute '{name}' does not exist or is not indexed"]})
    ftype = schema[name][0]
    if cmp not in _CMP_BY_TYPE.get(ftype, set()):
        raise BadRequestError(
            {"attributes": [f"Comparator '{cmp or 'eq'}' is not valid for attribute '{name}'"]}
        )
    value: Any = raw
    try:
        if ftype == "int":
            value = int(raw)
        elif ftype == "float":
            value = float(raw)
        elif ftype == "bool":
            value = raw.lower() in ("true", "1")
    except ValueError:
        raise BadRequestError({"attributes": [f"Invalid value '{raw}' for attribute '{name}'"]}) from None

    def pred(r: sqlite3.Row, t: list[str], a: dict[str, Any], lt: set[str]) -> bool:
        if name not in a:
            return cmp.startswith("not_") or cmp == "ne"
        x = a[name]
        match cmp:
            case "":
                return bool(x == value)
            case "ne":
                return bool(x != value)
            case "lt":
                return bool(x < value)
            case "lte":
                return bool(x <= value)
            case "gt":
                return bool(x > value)
            case "gte":
                return bool(x >= value)
            case "match" | "match_phrase":
                return str(value).lower() in str(x).lower()
            case "not_match" | "not_match_phrase":
                return str(value).lower() not in str(x).lower()
            case "prefix":
                return str(x).startswith(str(value))
            case "not_prefix":
                return not str(x).startswith(str(value))
        return False

    return pred


# --------------------------------------------------------------------------------------- handler

_HTML_500 = b'<!doctype html><html lang="en"><head><title>Server Error (500)</title></head><body><h1>Server Error (500)</h1><p></p></body></html>'  # noqa: E501
_HTML_404 = b'<!doctype html><html lang="en"><head><title>Not Found</title></head><body><h1>Not Found</h1></body></html>'  # noqa: E501


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # broken connections are the point of some faults


def _make_handler(server: DataroomServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive
        server_version = "dataroom-test"
        timeout = 60  # idle keep-alive connections go away

        def setup(self) -> None:
            super().setup()
            # Headers and body are separate writes: without this, Nagle's algorithm and delayed ACKs
            # add ~40 ms to every response.
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

        def do_GET(self) -> None:  # noqa: N802
            self._handle()

        def do_HEAD(self) -> None:  # noqa: N802
            self._handle()

        def do_POST(self) -> None:  # noqa: N802
            self._handle()

        def _handle(self) -> None:
            parts = urlsplit(self.path)
            params = parse_qs(parts.query, keep_blank_values=True)
            route, image_id = _route(parts.path)
            rec = RequestRecord(
                route=route,
                method=self.command,
                path=parts.path,
                query=parts.query,
                params=params,
                headers=dict(self.headers.items()),
                time=time.time(),
                client=f"{self.client_address[0]}:{self.client_address[1]}",
            )
            server._log(rec)
            try:
                fault = server._pick_fault(route, image_id)
                if fault is not None:
                    rec.fault = fault.kind
                try:
                    status, ctype, body, extra = self._answer(route, image_id, parts.path, params, fault)
                except Exception:  # a bug of this server: a 500 page, as Django's
                    status, ctype, body, extra = 500, "text/html; charset=utf-8", _HTML_500, {}
                rec.status = status
                if status == -1:  # the connection was reset
                    return
                self._send(status, ctype, body, extra, fault)
            finally:
                server._done()

        # -- routing ------------------------------------------------------------------------------

        def _answer(
            self,
            route: str,
            image_id: str | None,
            path: str,
            params: dict[str, list[str]],
            fault: Fault | None,
        ) -> tuple[int, str, bytes, dict[str, str]]:
            json_type = "application/json"
            if fault is not None:
                if fault.kind == "reset":
                    self._reset()
                    return -1, "", b"", {}
                if fault.kind == "latency":
                    time.sleep(fault.delay)
                if fault.kind == "status":
                    body = fault.body
                    if body is None:
                        if fault.status >= 500:
                            return fault.status, "text/html; charset=utf-8", _HTML_500, dict(fault.headers)
                        body = {"detail": f"injected {fault.status}"}
                    if isinstance(body, bytes):
                        return fault.status, "text/plain", body, dict(fault.headers)
                    data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
                    return fault.status, json_type, data, dict(fault.headers)
                if fault.kind == "malformed_json" and route != "file":
                    body = b"<html><body>upstream hiccup</body></html>" if fault.body is None else fault.body
                    return 200, json_type, body.encode() if isinstance(body, str) else body, {}
                if fault.kind == "no_results" and route != "file":
                    return 200, json_type, b'{"next": null}', {}

            if route == "file":
                return self._file(path, params, fault)
            if route == "unknown":
                return 404, "text/html; charset=utf-8", _HTML_404, {}
            if self.command != "GET" and self.command != "HEAD":
                return (
                    405,
                    json_type,
                    json.dumps({"detail": f'Method "{self.command}" not allowed.'}).encode(),
                    {},
                )
            denied = server.authenticate(self.headers.get("Authorization"))
            if denied is not None:
                return 403, json_type, json.dumps({"detail": denied}).encode(), {}
            try:
                if route == "images":
                    payload: Any = server.list_images(params, self.headers.get("Host") or "", path)
                elif route == "random":
                    payload = server.random_images(params)
                elif route == "count":
                    payload = server.count_images(params)
                elif route == "latent_types":
                    payload = server.latent_types()
                else:
                    assert image_id is not None
                    payload = server.image_detail(image_id, params)
                    if payload is None:
                        return 404, json_type, b'{"detail": "Not found."}', {}
            except BadRequestError as exc:
                return 400, json_type, json.dumps(exc.body).encode(), {}
            if fault is not None and isinstance(payload, dict) and "results" in payload:
                payload = _mangle_page(payload, fault)
            return 200, json_type, json.dumps(payload).encode(), {}

        def _file(
            self, path: str, params: dict[str, list[str]], fault: Fault | None
        ) -> tuple[int, str, bytes, dict[str, str]]:
            key = path[len("/files/") :]
            if not server._signature_ok(key, params):
                body = b"<?xml version='1.0'?><Error><Code>SignatureDoesNotMatch</Code></Error>"
                return 403, "application/xml", body, {}
            found = server.store.file(key)
            if found is None:
                return (
                    404,
                    "application/xml",
                    b"<?xml version='1.0'?><Error><Code>NoSuchKey</Code></Error>",
                    {},
                )
            data, ctype = found
            if fault is not None and fault.kind == "corrupt":
                if fault.body == b"truncate":
                    data = data[: len(data) // 2]
                else:
                    data = random.Random(key).randbytes(len(data))
            return 200, ctype, data, {}

        # -- sending ------------------------------------------------------------------------------

        def _send(
            self, status: int, ctype: str, body: bytes, extra: dict[str, str], fault: Fault | None
        ) -> None:
            kind = fault.kind if fault is not None else None
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            for k, v in extra.items():
                self.send_header(k, v)
            if kind == "chunked_cut":
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                half = body[: max(len(body) // 2, 1)]
                self.wfile.write(f"{len(half):x}\r\n".encode() + half + b"\r\n")
                self.wfile.flush()
                self._close_now()
                return
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command == "HEAD":
                return
            if kind == "truncate":
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                self._close_now()
                return
            if kind == "slow_body":
                assert fault is not None
                for start in range(0, len(body), fault.chunk):
                    self.wfile.write(body[start : start + fault.chunk])
                    self.wfile.flush()
                    time.sleep(fault.delay)
                return
            self.wfile.write(body)

        def _close_now(self) -> None:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)

        def _reset(self) -> None:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.connection.close()

    return Handler


def _route(path: str) -> tuple[str, str | None]:
    if path.startswith("/files/images/"):
        parts = path.split("/")
        return "file", parts[3] if len(parts) > 3 else None
    if path == "/api/images/":
        return "images", None
    if path == "/api/images/random/":
        return "random", None
    if path == "/api/images/count/":
        return "count", None
    if path == "/api/stats/latent_types/":
        return "latent_types", None
    if path.startswith("/api/images/") and path.endswith("/") and path.count("/") == 4:
        return "detail", path.split("/")[3]
    return "unknown", None


def _dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _mangle_page(payload: dict[str, Any], fault: Fault) -> dict[str, Any]:
    if fault.kind == "missing_keys":
        payload["results"] = [
            {k: v for k, v in r.items() if k not in fault.drop_keys} for r in payload["results"]
        ]
    elif fault.kind in ("relative_next", "dead_next") and payload.get("next"):
        parts = urlsplit(payload["next"])
        if fault.kind == "relative_next":
            payload["next"] = f"{parts.path}?{parts.query}"
        else:
            payload["next"] = f"http://127.0.0.1:{_dead_port()}{parts.path}?{parts.query}"
    return payload


# ---------------------------------------------------------------------------------------- images


def _photo(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """A smooth photo-like RGB array (gradients and a few blobs)."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    u, v = xx / max(width - 1, 1), yy / max(height - 1, 1)
    chans = []
    for c in range(3):
        f1, f2, ph = rng.uniform(0.5, 2.0), rng.uniform(0.5, 2.0), rng.uniform(0, 6.28)
        chans.append(128 + 60 * np.sin(6.28 * f1 * u + ph) + 50 * np.cos(6.28 * f2 * v + c) + 20 * (u - v))
    img = np.stack(chans, axis=-1)
    return np.clip(np.rint(img), 16, 239).astype(np.uint8)


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _png16_rgb(pixels: np.ndarray) -> bytes:
    """A 16-bit RGB PNG (Pillow cannot write one), values = 8-bit values * 257."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    h, w, _ = pixels.shape
    wide = (pixels.astype(">u2") * 257).reshape(h, w * 3)
    raw = b"".join(b"\x00" + wide[y].tobytes() for y in range(h))
    header = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 6))
        + chunk(b"IEND", b"")
    )


def _encode(pixels: np.ndarray, fmt: str) -> tuple[bytes, str, np.ndarray]:
    """(file bytes, extension, the RGB pixels a decoder gets back) for one of populate's formats."""
    img = Image.fromarray(pixels)
    if fmt == "JPEG":
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=95)
        data = buf.getvalue()
        return data, "jpg", np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    if fmt == "PNG":
        return _png(img), "png", pixels
    if fmt == "PNG_RGBA":  # opaque alpha: flattening changes nothing
        rgba = np.dstack([pixels, np.full(pixels.shape[:2], 255, np.uint8)])
        return _png(Image.fromarray(rgba, "RGBA")), "png", pixels
    if fmt == "PNG16":
        return _png16_rgb(pixels), "png", pixels
    if fmt == "PNG_L":
        grey = np.asarray(img.convert("L"))
        return _png(Image.fromarray(grey, "L")), "png", np.dstack([grey] * 3)
    raise ValueError(fmt)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=100)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--random-mode", choices=("prefix", "uniform"), default="prefix")
    ap.add_argument("--db", default=":memory:", help="SQLite file (default: in memory)")
    ap.add_argument("--serve-dir", help="serve the images of this folder instead of generated ones")
    args = ap.parse_args()
    with DataroomServer(db_path=args.db, port=args.port, random_mode=args.random_mode) as server:
        if args.serve_dir:
            server.serve_directory(args.serve_dir)
        else:
            server.populate(args.images)
        print(f"DATAROOM_API_URL={server.base_url}\nDATAROOM_API_KEY={server.token}", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
