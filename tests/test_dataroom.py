"""The dataroom HTTP source ("source_type": "db") end to end, against the loopback test server."""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

import datago
from support.config import dataroom_config
from support.dataroom_server import DEFAULT_TOKEN, DataroomServer, GeneratedImage
from support.drain import drain
from support.reference import mask_box_placement, psnr

N_IMAGES = 36


@pytest.fixture(scope="module")
def server() -> Iterator[DataroomServer]:
    with DataroomServer(seed=1) as srv:
        srv.populate(N_IMAGES, seed=1)
        yield srv


@pytest.fixture(autouse=True)
def _fresh(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATAROOM_API_URL", raising=False)
    monkeypatch.delenv("DATAROOM_API_KEY", raising=False)
    if "server" in request.fixturenames:
        srv: DataroomServer = request.getfixturevalue("server")
        srv.clear()
        srv.random_mode = "prefix"


def crop(size: int = 64) -> dict[str, Any]:
    return {"crop_and_resize": True, "default_image_size": size, "downsampling_ratio": 16}


def listing(server: DataroomServer, query: str) -> list[dict[str, Any]]:
    """Every result of GET images/?query, read directly from the server."""
    out: list[dict[str, Any]] = []
    url: str | None = f"{server.base_url}images/?{query}"
    while url:
        req = urllib.request.Request(url, headers={"Authorization": f"Token {server.token}"})
        with urllib.request.urlopen(req) as resp:
            page = json.loads(resp.read())
        out += page["results"]
        url = page["next"]
    return out


# --------------------------------------------------------------------------------------- listing


def test_every_image_exactly_once_across_pages(server: DataroomServer) -> None:
    got = drain(dataroom_config(server), keep_error=True)
    assert got.error is None
    ids = [s.id for s in got.samples]
    assert Counter(ids) == Counter(server.ids())
    assert got.stats["skipped_total"] == 0
    pages = server.requests_for("images")
    assert len(pages) == math.ceil(N_IMAGES / 5) + 1  # the data pages, then the terminal empty page
    assert all(p.status == 200 for p in pages)
    sorted_ids = sorted(server.ids())
    for i, page in enumerate(pages):
        assert page.headers["Authorization"] == f"Token {server.token}"
        assert page.params.get("cursor") == ([sorted_ids[min(5 * i, N_IMAGES) - 1]] if i else None)
    assert pages[-1].params["cursor"] == [sorted_ids[-1]]
    # Files carry no token, and the workers reuse their connections.
    files = server.requests_for("file")
    assert len(files) == N_IMAGES
    assert not any("Authorization" in f.headers for f in files)
    # At most one connection per fetcher (4 per worker, 2 workers), plus the page requests' ones.
    assert len({f.client for f in files}) <= 4 * 2 + 2


def test_limit(server: DataroomServer) -> None:
    got = drain(dataroom_config(server, limit=7), keep_error=True)
    assert got.error is None
    assert len({s.id for s in got.samples}) == len(got.samples) == 7


def test_ranks_disjoint_and_complete(server: DataroomServer) -> None:
    per_rank = []
    for rank in range(3):
        server.clear()
        got = drain(dataroom_config(server, rank=rank, world_size=3, page_size=4), keep_error=True)
        assert got.error is None
        per_rank.append([s.id for s in got.samples])
        for req in server.requests_for("images"):
            assert req.params["partitions_count"] == ["3"] and req.params["partition"] == [str(rank)]
    assert sum(len(r) for r in per_rank) == N_IMAGES
    assert set().union(*map(set, per_rank)) == set(server.ids())
    assert all(per_rank), "with 36 images every partition should get some"


def test_exact_query_string_for_a_full_config(server: DataroomServer) -> None:
    cfg = dataroom_config(
        server,
        page_size=3,
        rank=1,
        world_size=2,
        sources="unsplash,laion",
        sources__ne=["internal"],
        require_images=True,
        require_embeddings=True,
        tags=["photo", "art"],
        tags__ne="people",
        has_attributes=["caption"],
        lacks_attributes=[],
        has_masks="segmentation_mask",
        lacks_masks="",
        has_latents=["latent_vae"],
        lacks_latents=["masked_image"],
        return_duplicate_state=True,
        min_short_edge=16,
        max_short_edge=4096,
        min_pixel_count=100,
        max_pixel_count=10_000_000,
        duplicate_state=-1,
        random_sampling=False,
    )
    got = drain(cfg, keep_error=True)
    assert got.error is None
    query = (
        "fields=attributes,image_direct_url,latents,source,tags,coca_embedding,duplicate_state&page_size=3"
        "&return_latents=latent_vae,segmentation_mask&sources=unsplash,laion&sources__ne=internal"
        "&tags=photo,art&tags__ne=people&has_attributes=caption&has_masks=segmentation_mask"
        "&has_latents=latent_vae&lacks_latents=masked_image&short_edge__gte=16&short_edge__lte=4096"
        "&pixel_count__gte=100&pixel_count__lte=10000000&coca_embedding__empty=false"
        "&partitions_count=2&partition=1"
    )
    pages = server.requests_for("images")
    assert pages[0].query == query
    for page in pages[1:]:
        assert page.query == f"{query}&cursor={page.params['cursor'][0]}"
    # The server's own answer to that query is exactly what was delivered.
    expected = listing(server, query.replace("page_size=3", "page_size=2000"))
    assert expected, "the filters should match some images"
    assert sorted(s.id for s in got.samples) == sorted(r["id"] for r in expected)
    for s in got.samples:
        assert s.source in ("unsplash", "laion")
        assert {"photo", "art"} & set(s.tags) and "people" not in s.tags
        assert set(s.masks) == {"segmentation_mask"} and set(s.latents) == {"latent_vae"}
        assert s.embedding is not None


# ----------------------------------------------------------------------------- sample contents


def test_masks_and_additional_images_stay_aligned(server: DataroomServer) -> None:
    got = drain(
        dataroom_config(
            server, image=crop(64), has_masks=["segmentation_mask"], has_latents=["masked_image"]
        ),
        keep_error=True,
    )
    assert got.error is None and got.stats["skipped_total"] == 0
    expected = [g for g in server.generated.values() if "masked_image" in g.latents]
    assert len(expected) >= 5
    assert sorted(s.id for s in got.samples) == sorted(g.id for g in expected)
    for s in got.samples:
        gen = server.generated[s.id]
        image = s.array
        h, w = image.shape[:2]
        mask = s.mask_arrays()["segmentation_mask"]
        extra = s.additional_image_arrays()["masked_image"]
        assert s.masks["segmentation_mask"].mode == "L"
        assert mask.shape == (h, w) and mask.dtype == np.uint8
        assert extra.shape == (h, w, 3)
        assert set(np.unique(mask)) <= {0, 255}, "a mask must keep two levels"
        # The rectangle drawn at mask_box in the original lands where the crop puts it.
        assert gen.mask_box is not None
        want, got, _ = mask_box_placement(gen.width, gen.height, gen.mask_box, (w, h), mask)
        assert all(
            abs(g - max(0, min(e, lim))) <= 1.01 for g, e, lim in zip(got, want, (w, h, w, h), strict=True)
        ), (
            s.id,
            got,
            want,
        )
        # The additional image is the image, blacked out outside the mask: same pixels inside it.
        inside = mask > 0
        core = inside.copy()
        core[1:-1, 1:-1] &= inside[:-2, 1:-1] & inside[2:, 1:-1] & inside[1:-1, :-2] & inside[1:-1, 2:]
        if core.sum() > 20:
            assert psnr(extra[core], image[core]) > 30
        outside = ~inside
        outside[1:-1, 1:-1] &= ~inside[:-2, 1:-1] & ~inside[2:, 1:-1] & ~inside[1:-1, :-2] & ~inside[1:-1, 2:]
        assert extra[outside].mean() < 8


def test_latents_embeddings_and_metadata(server: DataroomServer) -> None:
    got = drain(
        dataroom_config(
            server, has_latents="latent_vae", require_embeddings=True, return_duplicate_state=True
        ),
        keep_error=True,
    )
    assert got.error is None and got.stats["skipped_total"] == 0
    expected = [g for g in server.generated.values() if "latent_vae" in g.latents and g.embedding is not None]
    assert {g.fmt for g in expected} == {"JPEG", "PNG", "PNG_RGBA", "PNG16", "PNG_L"}
    assert sorted(s.id for s in got.samples) == sorted(g.id for g in expected)
    for s in got.samples:
        gen: GeneratedImage = server.generated[s.id]
        assert s.latents["latent_vae"] == gen.latents["latent_vae"]
        assert s.latents["latent_vae"].startswith(b"\x93NUMPY")
        assert isinstance(s.embedding, np.ndarray) and s.embedding.dtype == np.float32
        assert s.embedding.shape == (768,)
        assert gen.embedding is not None and np.array_equal(s.embedding, gen.embedding)
        assert s.source == gen.source
        assert s.tags == gen.tags
        assert s.attributes == gen.attributes  # native types: big ints, bools, None, nested objects
        assert s.attributes["big_number"] == 2**60 + int(s.attributes["caption"].split()[-1])
        assert s.duplicate_state == gen.duplicate_state
        assert not s.masks and not s.additional_images
        # Full-size delivery: the pixels of every format (JPEG, RGBA, 16-bit and grey PNG).
        assert s.array.shape == gen.pixels.shape
        if gen.fmt == "JPEG":
            assert psnr(s.array, gen.pixels) > 35
        else:
            assert np.array_equal(s.array, gen.pixels), gen.fmt


def test_samples_without_their_image_when_not_required(server: DataroomServer) -> None:
    got = drain(
        dataroom_config(server, image=crop(64), require_images=False, has_masks=["segmentation_mask"]),
        keep_error=True,
    )
    assert got.error is None and got.stats["skipped_total"] == 0
    assert "image_direct_url" not in server.requests_for("images")[0].params["fields"][0]
    expected = [g for g in server.generated.values() if "segmentation_mask" in g.latents]
    assert expected and sorted(s.id for s in got.samples) == sorted(g.id for g in expected)
    buckets = set(datago.aspect_ratio_buckets(64, 16, 0.5, 2.0))
    for s in got.samples:
        assert not s.has_image
        with pytest.raises(datago.DatagoError, match="no main image"):
            s.array  # noqa: B018
        mask = s.mask_arrays()["segmentation_mask"]
        assert (mask.shape[1], mask.shape[0]) in buckets  # the mask got its own bucket
        assert set(np.unique(mask)) <= {0, 255}


def test_without_optional_fields_the_metadata_is_minimal(server: DataroomServer) -> None:
    got = drain(dataroom_config(server, limit=3), keep_error=True)
    assert got.error is None
    assert server.requests_for("images")[0].params["fields"] == ["attributes,image_direct_url,source,tags"]
    for s in got.samples:
        assert s.embedding is None and s.latents == {} and s.masks == {}
        assert "duplicate_state" not in s.metadata


# ------------------------------------------------------------------------------ fatal errors


def test_auth_failure_raises_with_the_server_message(server: DataroomServer) -> None:
    secret = "deadbeef" * 4 + "c0ffWXYZ"
    got = drain(dataroom_config(server, api_key=secret), keep_error=True)
    assert got.samples == []
    assert isinstance(got.error, datago.DatagoError)
    assert "HTTP 403" in str(got.error) and "Invalid token." in str(got.error)
    assert secret[:-4] not in str(got.error)
    assert len(server.requests_for("images")) == 1  # a 403 is not retried


def test_bad_filter_raises_with_the_server_message(server: DataroomServer) -> None:
    got = drain(dataroom_config(server, tags=["no-such-tag"]), keep_error=True)
    assert isinstance(got.error, datago.DatagoError)
    assert "HTTP 400" in str(got.error) and "One or more tags do not exist" in str(got.error)
    got = drain(dataroom_config(server, has_masks=["no_such_mask"]), keep_error=True)
    assert isinstance(got.error, datago.DatagoError)
    assert "One or more latent types do not exist" in str(got.error)


def test_config_errors_and_environment(server: DataroomServer, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(datago.ConfigError, match=r"source_config\.api_url: is required"):
        datago.Client({"source_type": "db", "source_config": {"api_key": DEFAULT_TOKEN}})
    with pytest.raises(datago.ConfigError, match=r"source_config\.api_key: is required") as info:
        datago.Client({"source_type": "db", "source_config": {"api_url": server.base_url}})
    assert info.value.key == "source_config.api_key"
    with pytest.raises(datago.ConfigError, match=r"source_config\.page_size: must be <= 2000"):
        datago.Client(dataroom_config(server, page_size=2001))
    with pytest.raises(datago.ConfigError, match=r"did you mean \"has_masks\""):
        datago.Client(dataroom_config(server, has_mask="segmentation_mask"))
    with pytest.raises(datago.ConfigError) as info:
        datago.Client(dataroom_config(server, api_url="not a url"))
    assert server.token[:-4] not in str(info.value)
    # Both default to the environment, read when the client is created (not when the library loaded).
    monkeypatch.setenv("DATAROOM_API_URL", server.base_url)
    monkeypatch.setenv("DATAROOM_API_KEY", server.token)
    for source_type in ("db", "DB", datago.SourceTypeDB):
        cfg = {"source_type": source_type, "source_config": {"page_size": 50}, "limit": 2}
        got = drain(cfg, keep_error=True)
        assert got.error is None and len(got.samples) == 2


# ------------------------------------------------------------------------------------- faults

FAULTS: dict[str, tuple[dict[str, Any], dict[str, Any], str]] = {
    # name: (fault, source_config overrides, expectation: "all", "skip:<n>" or "error:<text>")
    "page 500 twice": ({"kind": "status", "status": 500, "requests": {2, 3}}, {}, "all"),
    "page 503 retry-after": (
        {"kind": "status", "status": 503, "requests": {2}, "headers": {"Retry-After": "1"}},
        {},
        "all",
    ),
    "page 429": ({"kind": "status", "status": 429, "requests": {1}}, {}, "all"),
    "page reset": ({"kind": "reset", "requests": {2}}, {}, "all"),
    "page truncated": ({"kind": "truncate", "requests": {3}}, {}, "all"),
    "page chunked cut": ({"kind": "chunked_cut", "requests": {2}}, {}, "all"),
    "page malformed json": ({"kind": "malformed_json", "requests": {2}}, {}, "all"),
    "page without results": ({"kind": "no_results", "requests": {4}}, {}, "all"),
    "page latency > timeout": ({"kind": "latency", "delay": 1.5, "requests": {2}}, {"timeout_s": 0.5}, "all"),
    "page slow body": (
        {"kind": "slow_body", "chunk": 256, "delay": 0.3, "requests": {2}},
        {"timeout_s": 0.5},
        "all",
    ),
    "page results without id": ({"kind": "missing_keys", "requests": {2}}, {}, "skip:5"),
    "page results without source/attributes": (
        {"kind": "missing_keys", "drop_keys": ("source", "attributes"), "requests": {2}},
        {},
        "all",
    ),
    "relative next": ({"kind": "relative_next"}, {}, "all"),
    "next on a dead port": ({"kind": "dead_next"}, {}, "all"),
    "page 400 list body": (
        {"kind": "status", "status": 400, "body": ["Invalid cursor"], "requests": {3}},
        {},
        "error:HTTP 400 Bad Request: Invalid cursor",
    ),
    "page 500 forever": ({"kind": "status", "status": 502}, {"max_retries": 1}, "error:after 2 attempts"),
    "files 503 transient": (
        {"kind": "status", "route": "file", "status": 503, "requests": {1, 2, 5, 9}},
        {},
        "all",
    ),
    "file latency": ({"kind": "latency", "route": "file", "delay": 0.01}, {}, "all"),
    "file resets at random": ({"kind": "reset", "route": "file", "probability": 0.15}, {}, "any"),
    "file 404": ({"kind": "status", "route": "file", "status": 404, "image_id": "@3"}, {}, "skip:1"),
    "file corrupt": ({"kind": "corrupt", "route": "file", "image_id": "@4"}, {}, "skip:1:decode_error"),
    "file truncated every time": (
        {"kind": "truncate", "route": "file", "image_id": "@5"},
        {"max_retries": 1},
        "skip:1:read_error",
    ),
    "file too slow": (
        {"kind": "slow_body", "route": "file", "image_id": "@6", "chunk": 64, "delay": 0.2},
        {"max_retries": 1, "timeout_s": 0.5},
        "skip:1:read_error",
    ),
}


@pytest.mark.parametrize("name", list(FAULTS))
def test_injected_faults(server: DataroomServer, name: str) -> None:
    fault, overrides, expect = FAULTS[name]
    fault = dict(fault)
    if isinstance(fault.get("image_id"), str) and fault["image_id"].startswith("@"):
        fault["image_id"] = sorted(server.ids())[int(fault["image_id"][1:])]
    kind = fault.pop("kind")
    injected = server.add_fault(kind, **fault)
    got = drain(dataroom_config(server, **overrides), keep_error=True)
    assert injected.hits > 0, "the fault was never injected"
    ids = [s.id for s in got.samples]
    assert len(ids) == len(set(ids)), "a sample was delivered twice"
    if expect.startswith("error:"):
        assert isinstance(got.error, datago.DatagoError) and expect[6:] in str(got.error), got.error
        assert DEFAULT_TOKEN[:-4] not in str(got.error)
        return
    assert got.error is None, got.error
    # Every image is either delivered or counted as skipped.
    assert len(ids) + got.stats["skipped_total"] == N_IMAGES, (len(ids), got.stats)
    if expect == "all":
        assert sorted(ids) == sorted(server.ids()), got.stats
    elif expect.startswith("skip:"):
        _, count, *reason = expect.split(":")
        assert got.stats["skipped_total"] == int(count), got.stats
        if reason:
            assert got.stats["skipped"].get(reason[0]) == int(count), got.stats
        if "image_id" in fault:
            assert fault["image_id"] not in ids


# ------------------------------------------------------------------------------ random pages


def test_random_sampling_uniform(server: DataroomServer) -> None:
    server.random_mode = "uniform"
    got = drain(
        dataroom_config(server, random_sampling=True, page_size=8, sources=["laion"], limit=30),
        keep_error=True,
    )
    assert got.error is None
    assert len(got.samples) == 30
    assert all(s.source == "laion" for s in got.samples)
    pages = server.requests_for("page")
    assert len(pages) >= 30 // 8 and all(p.route == "random" for p in pages)
    assert not any("cursor" in p.params for p in pages)


def test_random_sampling_prefix_mode_on_a_small_set_ends_with_an_error(server: DataroomServer) -> None:
    # Faithful hash-prefix sampling matches ~1e-4 of the images per page: nothing, on 36 images.
    got = drain(dataroom_config(server, random_sampling=True, page_size=8), keep_error=True)
    assert isinstance(got.error, datago.DatagoError) and "random pages in a row were empty" in str(got.error)


# --------------------------------------------------------------------- the server's contract


def _get(url: str, token: str | None = DEFAULT_TOKEN, header: str | None = None) -> tuple[int, Any]:
    headers = {}
    if header is not None:
        headers["Authorization"] = header
    elif token is not None:
        headers["Authorization"] = f"Token  {token}"  # two spaces, as the original Go client
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers)) as resp:
            status, body = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read()
    try:
        return status, json.loads(body)
    except ValueError:
        return status, body


def test_server_contract(server: DataroomServer) -> None:
    api = server.base_url
    # Auth: 403, never 401.
    assert _get(api + "images/", token=None) == (
        403,
        {"detail": "Authentication credentials were not provided."},
    )
    assert _get(api + "images/", token="nope") == (403, {"detail": "Invalid token."})
    assert _get(api + "images/", header="Token") == (
        403,
        {"detail": "Invalid token header. No credentials provided."},
    )
    assert _get(api + "images/", header="token a b")[0] == 403
    assert _get(api + "images/", header=f"TOKEN {DEFAULT_TOKEN}")[0] == 200
    # Fields: id first, unknown and duplicate names dropped, default set otherwise.
    status, page = _get(api + "images/?page_size=1&fields=source,bogus,source,width")
    assert status == 200 and list(page["results"][0]) == ["id", "source", "width"]
    assert set(page) == {"next", "results"}
    _, page = _get(api + "images/?page_size=1&exclude_fields=id,author&include_fields=duplicate_state")
    assert list(page["results"][0])[0] == "id" and "author" not in page["results"][0]
    assert "duplicate_state" in page["results"][0] and "latents" not in page["results"][0]
    # return_latents filters the latents; returnLatents is ignored.
    _, page = _get(api + "images/?page_size=50&fields=latents&return_latents=latent_vae")
    assert {lt["latent_type"] for r in page["results"] for lt in r["latents"]} == {"latent_vae"}
    _, page = _get(api + "images/?page_size=50&fields=latents&returnLatents=latent_vae")
    assert len({lt["latent_type"] for r in page["results"] for lt in r["latents"]}) == 3
    # has_masks and has_latents are the same filter; unknown parameters are ignored.
    _, masks = _get(api + "images/?page_size=50&fields=id&has_masks=masked_image&whatever=1")
    _, lats = _get(api + "images/?page_size=50&fields=id&has_latents=masked_image")
    assert masks["results"] == lats["results"] and masks["results"]
    # Validation errors.
    assert _get(api + "images/?page_size=2001") == (
        400,
        {"page_size": ["Ensure this value is less than or equal to 2000."]},
    )
    assert _get(api + "images/?page_size=0")[0] == 400
    assert _get(api + "images/?partitions_count=49&partition=0") == (
        400,
        ['"partitions_count" should be between 2 and 48'],
    )
    assert _get(api + "images/?partitions_count=4")[0] == 400
    assert _get(api + "images/?partitions_count=4&partition=4")[0] == 400
    assert _get(api + "images/?duplicate_state=3")[0] == 400
    assert _get(api + "images/?has_attributes=exif")[0] == 400  # object-typed
    assert _get(api + "images/?attributes=n_faces__gte:2")[0] == 200
    assert _get(api + "images/?attributes=n_faces__prefix:2")[0] == 400
    # Cursor paging ends with {"next": null, "results": []}; partitions add up; random has no next.
    last = sorted(server.ids())[-1]
    assert _get(api + f"images/?cursor={last}") == (200, {"next": None, "results": []})
    total = _get(api + "images/count/")[1]["count"]
    parts = [_get(api + f"images/count/?partitions_count=5&partition={p}")[1]["count"] for p in range(5)]
    assert total == N_IMAGES == sum(parts)
    assert _get(api + "images/random/?page_size=5")[1]["next"] is None
    _, dup = _get(api + "images/?page_size=50&fields=duplicate_state&duplicate_state=None")
    assert dup["results"] and all(r["duplicate_state"] is None for r in dup["results"])
    # Files: no token needed, the signature is checked.
    _, page = _get(api + "images/?page_size=1&fields=image_direct_url")
    url = page["results"][0]["image_direct_url"]
    assert _get(url, token=None)[0] == 200
    assert _get(url.replace("X-Amz-Signature=", "X-Amz-Signature=0"), token=None)[0] == 403
    status, types = _get(api + "stats/latent_types/")
    assert status == 200 and {t["name"]: t["is_mask"] for t in types}["segmentation_mask"] is True
    assert _get(api + "images/nope/") == (404, {"detail": "Not found."})
