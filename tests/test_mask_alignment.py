"""Masks sit on the image's continuous geometry: through the dataroom test server (whose masks hold
a rectangle at a known place), at several bucket sizes and so scales from reductions to 8x
enlargements, every mask edge lands within half an output pixel of where scaling to cover,
centring and cropping puts the rectangle (before: +0.5 to +1.4 px, up to 3.2 px at 512)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

import datago
from support.dataroom_server import DataroomServer
from support.reference import mask_box_placement, psnr


@pytest.fixture(scope="module")
def server() -> Iterator[DataroomServer]:
    with DataroomServer(seed=3) as srv:
        srv.populate(40, seed=3, short_edge=64)
        yield srv


def config(server: DataroomServer, size: int) -> dict[str, Any]:
    return {
        "source_type": datago.SourceTypeDB,
        "source_config": {
            "api_url": server.base_url,
            "api_key": server.token,
            "page_size": 10,
            "has_masks": ["segmentation_mask"],
            "has_latents": ["masked_image"],
        },
        "image_config": {"crop_and_resize": True, "default_image_size": size, "downsampling_ratio": 16},
        "concurrency": 2,
    }


@pytest.mark.parametrize("size", [32, 128, 256, 512])
def test_mask_edges_on_the_continuous_geometry(server: DataroomServer, size: int) -> None:
    with datago.Client(config(server, size)) as client:
        samples = list(client)
        stats = client.stats()
    assert stats["skipped_total"] == 0
    assert len(samples) >= 5
    worst = 0.0
    for s in samples:
        gen = server.generated[s.id]
        image = s.array
        h, w = image.shape[:2]
        mask = s.mask_arrays()["segmentation_mask"]
        extra = s.additional_image_arrays()["masked_image"]
        assert mask.shape == (h, w) and set(np.unique(mask)) <= {0, 255}
        assert gen.mask_box is not None
        want, got, (sw, _) = mask_box_placement(gen.width, gen.height, gen.mask_box, (w, h), mask)
        for g, e, lim in zip(got, want, (w, h, w, h), strict=True):
            off = abs(float(g) - max(0.0, min(e, lim)))
            worst = max(worst, off)
            assert off <= 0.5 + 1e-9, (s.id, size, got, want)
        # The additional image (the image blacked out outside the mask, resized with Lanczos) agrees
        # with the mask: the image's pixels well inside the rectangle, black well outside, "well"
        # being beyond the reach of Lanczos-3 (3 input pixels) at this scale.
        margin = int(np.ceil(3 * max(sw / gen.width, 1.0))) + 1
        gx0, gy0, gx1, gy1 = (int(v) for v in got)
        core = np.zeros((h, w), dtype=bool)
        core[gy0 + margin : gy1 - margin, gx0 + margin : gx1 - margin] = True
        if core.sum() > 20:
            assert psnr(extra[core], image[core]) > 30, (s.id, size)
        outside = np.ones((h, w), dtype=bool)
        outside[max(gy0 - margin, 0) : gy1 + margin, max(gx0 - margin, 0) : gx1 + margin] = False
        if outside.any():
            assert extra[outside].mean() < 8, (s.id, size)
    print(f"size {size}: worst mask edge {worst:.3f} px from the continuous geometry")
