"""The handoff to Python: several samples per library call (datago_client_next_many), the resume state
of samples taken but not yet returned, and datago_sample_free without entering Go."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest
from PIL import Image

import datago
from datago import _lib
from datago.errors import DatagoError
from support.config import filesystem_config


def make_folder(root: Path, n: int) -> list[str]:
    paths = []
    for i in range(n):
        p = root / f"{i % 4}" / f"img{i:03d}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8 + i % 5, 8), (i % 256, 7, 9)).save(p)
        paths.append(str(p))
    return sorted(paths)


def test_threads_share_the_taken_samples_each_once(tmp_path: Path) -> None:
    files = make_folder(tmp_path, 400)
    got: list[str] = []
    lock = threading.Lock()
    with datago.Client(filesystem_config(tmp_path, concurrency=2, samples_buffer_size=64)) as client:

        def consume() -> None:
            for sample in client:
                assert sample.array.shape[2] == 3
                with lock:
                    got.append(sample.id)

        threads = [threading.Thread(target=consume) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert client.stats()["served"] == 400
    assert sorted(got) == files


@pytest.mark.parametrize("close_first", [False, True])
def test_samples_taken_but_not_returned_are_made_again_on_resume(tmp_path: Path, close_first: bool) -> None:
    files = make_folder(tmp_path, 120)
    cfg = filesystem_config(tmp_path, concurrency=2, samples_buffer_size=64, deterministic=True)
    for k in (1, 5, 9, 50):
        client = datago.Client(cfg)
        client.start()
        # Let the ready queue fill, so that every call takes several samples.
        while client.stats()["stages"]["ready"]["queue_fill"] == 0:
            pass
        before = [next(client).id for _ in range(k)]
        assert len(client._pending) > 0  # some were taken and not returned: the case under test
        if close_first:
            client.close()
        state = client.state_dict()
        client.close()
        with datago.Client(cfg, state=state) as second:
            after = [s.id for s in second]
        assert sorted(before + after) == files, k


def test_next_many_contract(tmp_path: Path) -> None:
    make_folder(tmp_path, 30)
    handle = _lib.client_new(json.dumps(filesystem_config(tmp_path, limit=20)))
    try:
        out, count = _lib.next_many_buffers(16)
        with pytest.raises(DatagoError) as info:  # before start
            _lib.client_next_many(handle, 1000, out, count)
        assert info.value.code == "STATE"
        _lib.client_start(handle)
        taken = 0
        sizes = []
        while True:
            status, owners = _lib.client_next_many(handle, 5000, out, count)
            if status == _lib.DATAGO_END:
                assert owners == [] and count[0] == 0
                break
            assert status == _lib.DATAGO_OK and 1 <= len(owners) <= 16
            sizes.append(len(owners))
            taken += len(owners)
        assert taken == 20  # the limit counts samples, whatever the calls took
        lib = _lib.get_lib()
        err = _lib.ffi.new("char **")
        assert lib.datago_client_next_many(handle, 0, 0, out, count, err) == _lib.DATAGO_ERR_STATE
        assert "max must be >= 1" in _lib.ffi.string(err[0]).decode()
        lib.datago_free(err[0])
        lib.datago_sample_free(_lib.ffi.NULL)  # a no-op, as before
        lib.datago_batch_free(_lib.ffi.NULL)
    finally:
        _lib.client_free(handle, os.getpid())
