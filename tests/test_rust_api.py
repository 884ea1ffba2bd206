"""datago.DatagoClient, the drop-in for Photoroom's Rust loader: its API, field types, defaults and
unknown-key handling, the Rust README's examples (run here unchanged but for paths and URLs), and a
Photoroom-style wrapper whose __del__ stops the client."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
import urllib.request
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

import datago
from datago import rust
from support.dataroom_server import DataroomServer
from support.images import photo, save
from support.process import PYTHON_DIR
from support.shards import standard_shard, write_shard
from support.wds_server import ShardServer

N_DB = 24


@pytest.fixture(scope="module")
def server() -> Iterator[DataroomServer]:
    with DataroomServer(seed=3) as srv:
        srv.populate(N_DB, seed=3)
        yield srv


@pytest.fixture
def folder(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    root = tmp_path / "imgs"
    arrays = {}
    for i, (w, h) in enumerate([(60, 40), (40, 60), (50, 50), (90, 30)]):
        arr = photo(w, h, seed=i)
        arrays[str(save(root / f"p{i}.png", arr))] = arr
    return root, arrays


def rust_file_config(root: Path, **top: Any) -> dict[str, Any]:
    return {
        "source_type": "file",
        "source_config": {"root_path": str(root), "random_sampling": False, "rank": 0, "world_size": 1},
        "limit": 200,
        "samples_buffer_size": 32,
        **top,
    }


@pytest.fixture(autouse=True)
def _fresh_logging(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """initialize_logging() configures the process once: each test starts unconfigured."""
    monkeypatch.delenv("DATAROOM_API_URL", raising=False)
    monkeypatch.delenv("DATAROOM_API_KEY", raising=False)
    yield
    if rust._handler is not None:
        logging.getLogger("datago").removeHandler(rust._handler)
        rust._handler = None
    logging.getLogger("datago").setLevel(logging.NOTSET)


# ------------------------------------------------------------------------------------------ API


def test_samples_have_the_rust_types(folder: tuple[Path, dict[str, np.ndarray]]) -> None:
    root, arrays = folder
    client = datago.DatagoClient(json.dumps(rust_file_config(root)))
    seen = {}
    while (sample := client.get_sample()) is not None:
        assert isinstance(sample, datago.DatagoSample)
        assert isinstance(sample.id, str) and sample.source == "filesystem"
        assert sample.attributes == "{}" and json.loads(sample.attributes) == {}
        assert sample.duplicate_state == -1
        assert sample.coca_embedding == [] and sample.tags == []
        assert sample.latents == {} and sample.masks == {} and sample.additional_images == {}
        image = sample.image
        assert isinstance(image, datago.ImagePayload)
        # Callable, PIL attributes delegated, PIL image, zero-copy array, payload.
        pil = image()
        assert isinstance(pil, Image.Image) and image.to_pil_image() is pil
        assert (image.width, image.height) == pil.size == image.size and image.mode == "RGB"
        arr = image.to_numpy_array()
        assert arr.base is not None and not arr.flags.owndata
        np.testing.assert_array_equal(arr, arrays[sample.id])  # lossless PNG, no processing
        payload = image.get_payload()
        assert payload.data == arr.tobytes()
        assert (payload.width, payload.height) == pil.size
        assert (payload.original_width, payload.original_height) == pil.size
        assert (payload.channels, payload.bit_depth, payload.is_encoded) == (3, 8, False)
        seen[sample.id] = sample
    assert sorted(seen) == sorted(arrays)
    client.stop()


def test_get_sample_auto_convert(folder: tuple[Path, dict[str, np.ndarray]]) -> None:
    root, arrays = folder
    client = datago.DatagoClient(rust_file_config(root))  # a dict works too
    got = client.get_sample_auto_convert()
    assert got is not None
    assert set(got) == {
        "id", "source", "duplicate_state", "attributes", "tags", "coca_embedding",
        "latents", "image", "masks", "additional_images",
    }  # fmt: skip
    assert isinstance(got["image"], Image.Image) and got["source"] == "filesystem"
    assert got["attributes"] == {} and got["duplicate_state"] == -1
    np.testing.assert_array_equal(np.asarray(got["image"]), arrays[got["id"]])
    client.stop()


def test_end_of_stream_stop_and_new_pass(folder: tuple[Path, dict[str, np.ndarray]]) -> None:
    root, arrays = folder
    client = datago.DatagoClient(json.dumps(rust_file_config(root)))
    first = [s.id for s in iter(client.get_sample, None)]
    assert sorted(first) == sorted(arrays)
    assert client.get_sample() is None and client.get_sample() is None  # stays at the end
    client.start()  # a new pass, as 2026.10.1
    second = [s.id for s in iter(client.get_sample, None)]
    assert sorted(second) == sorted(arrays)
    client.start()
    assert client.get_sample() is not None
    client.stop()
    assert client.get_sample() is None  # after stop(), until start()
    client.stop()  # idempotent
    client.start()
    assert len(list(client)) == len(arrays)
    client.stop()


def test_pre_encoded_payload_takes_the_rust_defaults(folder: tuple[Path, dict[str, np.ndarray]]) -> None:
    root, arrays = folder
    cfg = rust_file_config(root, image_config={"crop_and_resize": False, "pre_encode_images": True})
    client = datago.DatagoClient(json.dumps(cfg))
    for sample in iter(client.get_sample, None):
        payload = sample.image.get_payload()
        assert payload.is_encoded and payload.channels == -1 and payload.data.startswith(b"\x89PNG")
        assert (payload.original_width, payload.original_height) == (payload.width, payload.height)
        # PNG (the Rust default), lossless: the pixels of the file.
        np.testing.assert_array_equal(sample.image.to_numpy_array(), arrays[sample.id])
        assert sample.image.format == "PNG"
    # With an explicit format, the key wins; jpeg_quality reaches the encoder.
    sizes = {}
    for quality in (20, 95):
        image = {"pre_encode_images": True, "encode_format": "jpeg", "jpeg_quality": quality}
        client = datago.DatagoClient(rust_file_config(root, image_config=image))
        sizes[quality] = sum(len(s.image.get_payload().data) for s in iter(client.get_sample, None))
        assert sizes[quality] > 0
    assert sizes[20] < sizes[95]


def test_alpha_background_default_is_the_rust_grey(tmp_path: Path) -> None:
    rgba = np.zeros((4, 8, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, np.arange(8) * 32
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    image = {"crop_and_resize": False, "image_to_rgb8": True}
    rust_px = datago.DatagoClient(rust_file_config(tmp_path, image_config=image)).get_sample()
    assert rust_px is not None
    assert rust_px.image.to_numpy_array()[0, 0].tolist() == [128, 128, 128]
    # Without image_to_rgb8, the Rust default: native modes, the alpha kept.
    native = datago.DatagoClient(rust_file_config(tmp_path, image_config={"crop_and_resize": False}))
    native_px = native.get_sample()
    assert native_px is not None and native_px.image.mode == "RGBA"
    np.testing.assert_array_equal(native_px.image.to_numpy_array(), rgba)
    # datago.Client keeps its white; alpha_background chooses.
    with datago.Client(rust_file_config(tmp_path, image_config=image)) as c:
        assert c.get_sample().array[0, 0].tolist() == [255, 255, 255]
    cfg = rust_file_config(tmp_path, image_config={**image, "alpha_background": [0, 10, 20]})
    with datago.Client(cfg) as c:
        assert c.get_sample().array[0, 0].tolist() == [0, 10, 20]


def test_alpha_background_keep_delivers_rgba(tmp_path: Path) -> None:
    rgba = photo(30, 20, seed=5)
    alpha = np.tile(np.arange(30, dtype=np.uint8) * 8, (20, 1))
    Image.fromarray(np.dstack([rgba, alpha]), "RGBA").save(tmp_path / "a.png")
    save(tmp_path / "b.jpg", photo(30, 20, seed=6))
    cfg = rust_file_config(tmp_path, image_config={"alpha_background": "keep"})
    with datago.Client(cfg) as client:
        got = {Path(s.id).name: s for s in client}
    a, b = got["a.png"], got["b.jpg"]
    assert a.image.mode == "RGBA" and a.array.shape == (20, 30, 4)
    np.testing.assert_array_equal(a.array[..., 3], alpha)
    visible = alpha > 0
    np.testing.assert_array_equal(a.array[..., :3][visible], rgba[visible])
    assert b.array.shape == (20, 30, 4) and (b.array[..., 3] == 255).all()
    # Resized into buckets: still RGBA, under DatagoClient too; there image_to_rgb8 defaults to
    # false (native modes), which adds no alpha to an image without one.
    image = {
        "alpha_background": "keep",
        "crop_and_resize": True,
        "default_image_size": 32,
        "downsampling_ratio": 16,
    }
    channels = {
        Path(sample.id).name: sample.image.get_payload().channels
        for sample in datago.DatagoClient(rust_file_config(tmp_path, image_config=image))
    }
    assert channels == {"a.png": 4, "b.jpg": 3}
    for sample in datago.DatagoClient(
        rust_file_config(tmp_path, image_config={**image, "image_to_rgb8": True})
    ):
        assert sample.image.mode == "RGBA" and sample.image.get_payload().channels == 4


def test_unknown_keys_warn_under_datagoclient_only(
    folder: tuple[Path, dict[str, np.ndarray]], caplog: pytest.LogCaptureFixture
) -> None:
    root, arrays = folder
    cfg = rust_file_config(root, samples_bufer_size=8)
    cfg["source_config"]["page_sise"] = 4
    with caplog.at_level(logging.WARNING, logger="datago"):
        client = datago.DatagoClient(json.dumps(cfg))
    text = caplog.text
    assert "samples_bufer_size" in text and '"samples_buffer_size"' in text
    assert "source_config.page_sise" in text and '"page_size"' in text
    assert len(list(client)) == len(arrays)
    with pytest.raises(datago.ConfigError) as err:
        datago.Client(cfg)
    assert err.value.key in ("samples_bufer_size", "source_config.page_sise")
    # A wrong type or an impossible value still raises, naming the key.
    for bad, key in [
        ({"samples_buffer_size": "many"}, "samples_buffer_size"),
        ({"image_config": {"jpeg_quality": 300}}, "image_config.jpeg_quality"),
        ({"image_config": {"encode_format": "tiff"}}, "image_config.encode_format"),
    ]:
        with pytest.raises(datago.ConfigError) as err:
            datago.DatagoClient(rust_file_config(root, **bad))
        assert err.value.key == key


def listing(server: DataroomServer, query: str) -> list[str]:
    """The ids of GET images/?query, read directly from the server."""
    out: list[str] = []
    url: str | None = f"{server.base_url}images/?{query}"
    while url:
        req = urllib.request.Request(url, headers={"Authorization": f"Token {server.token}"})
        with urllib.request.urlopen(req) as resp:
            page = json.loads(resp.read())
        out += [r["id"] for r in page["results"]]
        url = page["next"]
    return sorted(out)


@pytest.mark.parametrize(
    ("keys", "query"),
    [
        ({"tags_all": "photo,art"}, "tags__all=photo,art"),
        ({"tags_ne_all": ["photo", "art"]}, "tags__ne_all=photo,art"),
        ({"tags_empty": True}, "tags__empty=true"),
        ({"tags_empty": False}, "tags__empty=false"),
        ({"attributes": "aesthetic_score__gte:5.5"}, "attributes=aesthetic_score__gte:5.5"),
        ({"attributes": ["n_faces__lte:1", "is_photo:true"]}, "attributes=n_faces__lte:1,is_photo:true"),
        ({"sources_ne": "internal", "tags_ne": "people"}, "sources__ne=internal&tags__ne=people"),
    ],
)
def test_rust_dataroom_filters(server: DataroomServer, keys: dict[str, Any], query: str) -> None:
    cfg = {
        "source_config": {
            "api_url": server.base_url,
            "api_key": server.token,
            "require_images": False,
            **keys,
        }
    }
    got = sorted(s.id for s in datago.DatagoClient(cfg))
    want = listing(server, query)
    assert got == want
    assert 0 < len(want) < N_DB, "the filter must select some samples, not all"


def test_webdataset_reference_image_and_aligned_members(tmp_path: Path) -> None:
    """reference_image_type names the main image; the other image members arrive as masks (mask,
    seg) or additional images, cropped and resized with it."""

    def png(arr: np.ndarray) -> bytes:
        buf = BytesIO()
        Image.fromarray(arr).save(buf, "PNG")
        return buf.getvalue()

    samples = []
    for i, (w, h) in enumerate([(90, 60), (60, 90), (100, 40)]):
        img = photo(w, h, seed=i)
        mask = np.zeros((h, w), np.uint8)
        mask[h // 4 : h // 2, w // 3 : w // 2] = 255
        samples.append((f"k{i}", {"png": png(img), "copy.png": png(img), "seg.png": png(mask), "txt": b"c"}))
    shard = write_shard(tmp_path / "s.tar", samples)
    cfg = {
        "source_type": "webdataset",
        "source_config": {"url": str(shard), "reference_image_type": "png", "random_sampling": False},
        "image_config": {"crop_and_resize": True, "default_image_size": 64, "downsampling_ratio": 16},
    }
    n = 0
    for sample in datago.DatagoClient(cfg):
        n += 1
        main = sample.image.to_numpy_array()
        copy = sample.additional_images["copy.png"].to_numpy_array()
        mask = sample.masks["seg.png"].to_numpy_array()[..., 0]
        np.testing.assert_array_equal(copy, main)  # the same pixels through the same crop
        assert mask.shape == main.shape[:2] and set(np.unique(mask)) <= {0, 255}
        assert (
            sample.masks["seg.png"].get_payload().original_width == sample.image.get_payload().original_width
        )
    assert n == 3


def test_image_to_rgb8_false_delivers_native_modes(folder: tuple[Path, dict[str, np.ndarray]]) -> None:
    """image_to_rgb8 false is accepted by both clients, with the same native modes."""
    root, arrays = folder
    cfg = rust_file_config(root, image_config={"image_to_rgb8": False})
    rust = {s.id: s for s in datago.DatagoClient(cfg)}
    with datago.Client(cfg) as client:
        ours = {s.id: s for s in client}
    assert sorted(rust) == sorted(ours) == sorted(arrays)
    for key, sample in ours.items():
        payload = rust[key].image.get_payload()  # type: ignore[union-attr]
        assert sample.mode == rust[key].image.mode  # type: ignore[union-attr]
        assert payload.channels == (sample.array.shape[2] if sample.array.ndim == 3 else 1)
        assert payload.bit_depth == sample.bit_depth == 8


def test_initialize_logging(monkeypatch: pytest.MonkeyPatch) -> None:
    logger = logging.getLogger("datago")
    monkeypatch.setenv("RUST_LOG", "other=debug,datago=info")
    assert datago.initialize_logging() is True
    assert logger.level == logging.INFO
    assert datago.initialize_logging("debug") is False  # already configured: unchanged
    assert logger.level == logging.INFO
    logger.removeHandler(rust._handler)  # type: ignore[arg-type]
    rust._handler = None
    assert datago.initialize_logging(log_level="warn") is True and logger.level == logging.WARNING
    logger.removeHandler(rust._handler)  # type: ignore[arg-type]
    rust._handler = None
    with pytest.raises(ValueError):
        datago.initialize_logging("loud")


def test_client_sample_source_is_filesystem(folder: tuple[Path, dict[str, np.ndarray]]) -> None:
    root, _ = folder
    with datago.Client(rust_file_config(root)) as client:
        assert client.get_sample().source == "filesystem"  # type: ignore[union-attr]


# ------------------------------------------------------------------- dataroom: masks and types


def test_dataroom_types_and_mask_sizes(server: DataroomServer) -> None:
    cfg = {
        "source_config": {
            "api_url": server.base_url,
            "api_key": server.token,
            "has_masks": "segmentation_mask",
            "has_latents": "masked_image",
            "return_latents": "latent_vae",
            "require_embeddings": True,
            "return_duplicate_state": True,
        },
        "image_config": {"crop_and_resize": True, "default_image_size": 64, "downsampling_ratio": 16},
    }
    client = datago.DatagoClient(json.dumps(cfg))  # no source_type: the Rust default, "db"
    n = latents = 0
    for sample in client:
        gen = server.generated[sample.id]
        n += 1
        assert sample.source == gen.source and isinstance(sample.source, str)
        assert isinstance(sample.attributes, str) and isinstance(json.loads(sample.attributes), dict)
        assert isinstance(sample.duplicate_state, int)
        assert sample.coca_embedding and all(isinstance(x, float) for x in sample.coca_embedding)
        assert isinstance(sample.tags, list)
        image = sample.image
        mask = sample.masks["segmentation_mask"]
        extra = sample.additional_images["masked_image"]
        assert mask.size == image.size == extra.size
        assert mask.mode == "L" and extra.mode == "RGB"
        assert mask.to_numpy_array().shape == (image.height, image.width, 1)
        # Each payload carries its own size before processing.
        assert image.get_payload().original_width == gen.width
        for payload in (mask, extra):
            p = payload.get_payload()
            assert (p.original_width, p.original_height) == (gen.width, gen.height)
        assert set(sample.latents) == {"latent_vae"} & set(gen.latents)
        for latent in sample.latents.values():
            assert isinstance(latent.data, bytes) and latent.len == len(latent.data) > 0
            latents += 1
        converted = client.get_sample_auto_convert()
        if converted is not None:
            n += 1
            assert isinstance(converted["masks"]["segmentation_mask"], Image.Image)
            for value in converted["latents"].values():
                assert value["len"] == len(value["data"])
    assert n >= 5 and latents > 0


def test_pre_encode_encodes_masks_as_png(server: DataroomServer) -> None:
    cfg = {
        "source_type": "db",
        "source_config": {
            "api_url": server.base_url,
            "api_key": server.token,
            "has_masks": "segmentation_mask",
        },
        "image_config": {"crop_and_resize": True, "default_image_size": 64, "pre_encode_images": True},
    }
    client = datago.DatagoClient(cfg)
    sample = client.get_sample()
    assert sample is not None
    mask = sample.masks["segmentation_mask"]
    assert mask.get_payload().is_encoded and mask.get_payload().data.startswith(b"\x89PNG")
    assert mask.to_pil_image().size == sample.image.to_pil_image().size
    client.stop()
    with datago.Client(cfg) as c:
        s = c.get_sample()
        assert isinstance(s.masks["segmentation_mask"], bytes)  # type: ignore[union-attr]


# ------------------------------------------------------------------ the Rust README's examples


def run_example(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Runs an example of the Rust loader's README, as it is written there, in a fresh interpreter."""
    full_env = {**os.environ, "PYTHONPATH": str(PYTHON_DIR), **env}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code) + "\nprint('samples', sum(s is not None for s in got))"],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_rust_readme_dataroom_example(server: DataroomServer) -> None:
    # As in the README, but the loop keeps its samples to count them (`got`).
    code = """
    from datago import DatagoClient, initialize_logging
    import os
    import json

    initialize_logging()

    config = {
        "source_config": {
            "sources": os.environ.get("DATAROOM_TEST_SOURCE", ""),
            "page_size": 500,
            "rank": 0,
            "world_size": 1,
        },
        "limit": 200,
        "samples_buffer_size": 32,
    }

    client = DatagoClient(json.dumps(config))

    got = []
    for _ in range(10):
        sample = client.get_sample()
        got.append(sample)
    """
    env = {"DATAROOM_API_URL": server.base_url, "DATAROOM_API_KEY": server.token, "RUST_LOG": "warn"}
    out = run_example(code, env)
    assert out.returncode == 0, out.stderr
    assert "samples 10" in out.stdout


def test_rust_readme_files_example(folder: tuple[Path, dict[str, np.ndarray]]) -> None:
    root, _ = folder
    for i in range(4, 12):
        save(root / f"more{i}.jpg", photo(30 + i, 20, seed=i))
    code = f"""
    from datago import DatagoClient, initialize_logging
    import os
    import json

    initialize_logging(log_level="warn")

    config = {{
        "source_type": "file",
        "source_config": {{
            "root_path": {str(root)!r},
            "random_sampling": False,  # True if used directly for training
            "rank": 0,  # Optional, distributed workloads are possible
            "world_size": 1,
        }},
        "limit": 200,
        "samples_buffer_size": 32,
    }}

    client = DatagoClient(json.dumps(config))

    got = []
    for _ in range(10):
        sample = client.get_sample()
        got.append(sample)
    """
    out = run_example(code, {})
    assert out.returncode == 0, out.stderr
    assert "samples 10" in out.stdout


def test_rust_readme_processing_example(folder: tuple[Path, dict[str, np.ndarray]]) -> None:
    root, arrays = folder
    config = {
        "source_type": "file",
        "source_config": {
            "root_path": str(root),
            "random_sampling": False,  # True if used directly for training
        },
        "image_config": {
            "crop_and_resize": True,  # False to turn it off, or just omit this part of the config
            "default_image_size": 1024,
            "downsampling_ratio": 32,
            "min_aspect_ratio": 0.5,
            "max_aspect_ratio": 2.0,
            "pre_encode_images": False,
        },
        "limit": 200,
        "samples_buffer_size": 32,
    }
    client = datago.DatagoClient(json.dumps(config))
    buckets = datago.aspect_ratio_buckets(1024, 32, 0.5, 2.0)
    n = 0
    for sample in iter(client.get_sample, None):
        assert sample.image.size in buckets
        n += 1
    assert n == len(arrays)


def test_rust_readme_webdataset_example(tmp_path: Path) -> None:
    shards = tmp_path / "shards"
    for i in range(3):
        write_shard(shards / f"imagenet-train-{i:06d}.tar", standard_shard(i, 5))
    with ShardServer(root=shards) as srv:
        url = srv.url("/imagenet-train-{000000..000002}.tar")
        code = f"""
        from datago import DatagoClient, initialize_logging
        import os
        import json

        initialize_logging(log_level="warn")

        url = {url!r}

        client_config = {{
            "source_type": "webdataset",
            "source_config": {{
                "url": url,
                "random_sampling": False,
                "concurrent_downloads": 8,
                "rank": 0,
                "world_size": 1,
            }},
            "prefetch_buffer_size": 128,
            "samples_buffer_size": 64,
            "limit": 1_000_000,
        }}

        client = DatagoClient(json.dumps(client_config))

        got = []
        for _ in range(10):
            sample = client.get_sample()
            got.append(sample)
        """
        out = run_example(code, {})
    assert out.returncode == 0, out.stderr
    assert "samples 10" in out.stdout


# ------------------------------------------------------------------------ a __del__ wrapper


def test_wrapper_whose_del_stops_the_client(folder: tuple[Path, dict[str, np.ndarray]]) -> None:
    """Photoroom's training code wraps the client in an object whose __del__ calls stop(); the
    wrapper is often only freed by the cycle collector, at any point of another thread's work."""
    root, arrays = folder
    code = f"""
    import gc, json, threading
    from datago import DatagoClient

    class Loader:
        def __init__(self):
            self.client = DatagoClient({json.dumps(json.dumps(rust_file_config(root)))})
            self.me = self  # a cycle: only gc frees it
            self.client.start()

        def __del__(self):
            self.client.stop()

    for round in range(20):
        loader = Loader()
        sample = loader.client.get_sample()
        assert sample is not None
        if round % 2:
            del sample  # the sample may also outlive the wrapper
        del loader
        gc.collect()
    gc.collect()
    print("ok")
    """
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env={**os.environ, "PYTHONPATH": str(PYTHON_DIR)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), (out.returncode, out.stderr[-2000:])
    assert "Exception ignored" not in out.stderr, out.stderr[-2000:]


# ------------------------------------------------------------------- fresh seed per client


def test_random_sampling_without_seed_draws_one_per_client(tmp_path: Path) -> None:
    root = tmp_path / "many"
    for i in range(24):
        save(root / f"{i:02d}.png", photo(16, 12, seed=i))
    cfg = {
        "source_type": "file",
        "source_config": {"root_path": str(root), "random_sampling": True},
        "concurrency": 1,
    }
    orders, seeds = [], []
    for _ in range(2):
        with datago.Client(cfg) as client:
            orders.append([s.id for s in client])
            seeds.append(client.stats()["seed"])
    assert seeds[0] != seeds[1] and orders[0] != orders[1]
    assert sorted(orders[0]) == sorted(orders[1])
    # With the reported seed, the order is reproduced; with a seed, it is the same on every run.
    with datago.Client({**cfg, "source_config": {**cfg["source_config"], "seed": seeds[0]}}) as client:
        assert [s.id for s in client] == orders[0]
    # The resume state carries the drawn seed: a config without a seed resumes in the same order.
    with datago.Client(cfg) as client:
        head = [client.get_sample().id for _ in range(5)]  # type: ignore[union-attr]
        state = client.state_dict()
        full_seed = client.stats()["seed"]
    assert state["seed"] == full_seed
    with datago.Client({**cfg, "source_config": {**cfg["source_config"], "seed": full_seed}}) as client:
        whole = [s.id for s in client]
    with datago.Client(cfg, state=state) as client:
        assert client.stats()["seed"] == full_seed
        rest = [s.id for s in client]
    assert whole[:5] == head and rest == whole[5:]
