"""Runs a config through a ``DatagoClient`` and records what it delivers: the same script drives
Photoroom's Rust loader (in its own venv, .cache/bench/venv-rust) and datago.DatagoClient.

    python rust_worker.py CONFIG.json OUT_DIR

OUT_DIR/result.json lists every sample (id, payload fields, PIL mode and size, the keys of
get_sample_auto_convert); OUT_DIR/<n>.npy holds sample n's PIL image as RGB (absent when the loader
cannot make one), OUT_DIR/<n>.raw.npy the payload's raw samples (unencoded payloads). Uses only
what both loaders have: nothing of the test suite is imported.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

import datago


def plain_id(raw: Any) -> str:
    """The Rust loader's ids are JSON strings (the path with its quotes)."""
    text = str(raw)
    if text.startswith('"'):
        try:
            return str(json.loads(text))
        except ValueError:
            pass
    return text


def payload_fields(image: Any) -> dict[str, Any]:
    p = image.get_payload()
    fields = {
        k: getattr(p, k)
        for k in (
            "width",
            "height",
            "original_width",
            "original_height",
            "channels",
            "bit_depth",
            "is_encoded",
        )
    }
    fields["magic"] = bytes(p.data[:4]).hex()
    fields["len"] = len(p.data)
    return fields


def main() -> None:
    config_path, out_dir = Path(sys.argv[1]), Path(sys.argv[2])
    out_dir.mkdir(parents=True, exist_ok=True)
    config = json.loads(config_path.read_text())
    client = datago.DatagoClient(json.dumps(config))
    samples = []
    while (sample := client.get_sample()) is not None:
        n = len(samples)
        payload = sample.image.get_payload()
        try:
            pil = sample.image.to_pil_image()
        except ValueError:  # the Rust loader cannot make PIL images of its 16-bit payloads
            pil = None
        entry: dict[str, Any] = {
            "id": plain_id(sample.id),
            "source": sample.source,
            "mode": None if pil is None else pil.mode,
            "size": [payload.width, payload.height] if pil is None else list(pil.size),
            "payload": payload_fields(sample.image),
            "types": {
                "attributes": type(sample.attributes).__name__,
                "duplicate_state": type(sample.duplicate_state).__name__,
                "coca_embedding": type(sample.coca_embedding).__name__,
                "tags": type(sample.tags).__name__,
                "source": type(sample.source).__name__,
            },
        }
        if pil is not None:
            np.save(out_dir / f"{n}.npy", np.asarray(pil.convert("RGB")))
        if not payload.is_encoded:
            # The raw samples, HxWxC, of the payload's depth (both loaders: host byte order).
            dtype = np.uint16 if payload.bit_depth == 16 else np.uint8
            raw = np.frombuffer(payload.data, dtype=dtype)
            np.save(out_dir / f"{n}.raw.npy", raw.reshape(payload.height, payload.width, -1))
        samples.append(entry)
    client.start()  # a new pass (2026.10.1): get_sample_auto_convert's keys and types
    converted = client.get_sample_auto_convert()
    client.stop()
    auto = None
    if converted is not None:
        auto = {k: type(v).__name__ for k, v in converted.items()}
    (out_dir / "result.json").write_text(json.dumps({"samples": samples, "auto_convert": auto}))


if __name__ == "__main__":
    main()
