"""Lifetimes: zero-copy arrays, Ctrl-C, fork, garbage collection, interpreter exit, memory."""

from __future__ import annotations

import gc
import json
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import datago
from datago import _lib
from support.config import filesystem_config, image_config
from support.dataroom_server import DataroomServer
from support.drain import drain
from support.forking import IMPORT_WAIT_CHILD
from support.images import save, write_flat_png
from support.process import rss_bytes, run_python, thread_count


def test_arrays_outlive_client_and_samples(photo_dir) -> None:
    root, paths = photo_dir(40, size=(40, 30))
    client = datago.Client(filesystem_config(root))
    client.start()
    arrays: dict[str, np.ndarray] = {}
    images: dict[str, Image.Image] = {}
    samples = []
    for sample in client:
        arrays[sample.id] = sample.array
        images[sample.id] = sample.image
        samples.append(sample)
    assert len(arrays) == len(paths)
    assert all(not a.flags.owndata for a in arrays.values()), "arrays must view library memory"
    client.close()
    del samples, sample
    gc.collect()
    # Churn the allocator so freed memory would be reused and overwritten.
    for _ in range(3):
        junk = drain(filesystem_config(root)).samples
        del junk
        gc.collect()
    for path_id, arr in arrays.items():
        with Image.open(path_id) as im:
            expected = np.asarray(im.convert("RGB"))
        assert np.array_equal(arr, expected), path_id
        assert np.array_equal(np.asarray(images[path_id]), expected)


def test_array_is_a_view_of_one_buffer(photo_dir) -> None:
    root, _ = photo_dir(1)
    (sample,) = drain(filesystem_config(root)).samples
    a, b = sample.array, sample.array
    assert a is b
    view2 = np.asarray(sample.array)
    view2[0, 0] = (1, 2, 3)
    assert tuple(a[0, 0]) == (1, 2, 3)
    assert sample.mask_arrays() == {}
    assert sample.additional_image_arrays() == {}
    assert sample.masks == {} and sample.additional_images == {} and sample.latents == {}
    assert sample.metadata == {} or isinstance(sample.metadata, dict)
    assert sample.tags == [] or isinstance(sample.tags, list)
    assert sample.attributes == {} or isinstance(sample.attributes, dict)
    assert sample.duplicate_state is None or sample.duplicate_state is not None
    assert "Sample" in repr(sample)


def _slow_tree(root: Path, copies: int = 4, size: int = 4000) -> Path:
    """A slow source (about a second per sample): one big, slow-to-decode PNG behind several symlinks."""
    big = write_flat_png(root / "big.png", size, size, slow=True)
    for i in range(copies):
        os.symlink(big, root / f"link{i:02d}.png")
    return root


def test_ctrl_c_interrupts_a_blocked_get_sample() -> None:
    # The only image is held back by the server for hold_s seconds: the interrupt, sent 0.15 s into the wait,
    # always finds get_sample blocked, however loaded the machine is.
    hold_s = 3.0
    with DataroomServer(seed=3) as server:
        server.populate(1, seed=3)
        server.add_fault("latency", route="file", delay=hold_s)
        cfg = {
            "source_type": "db",
            "source_config": {"api_url": server.base_url, "api_key": server.token, "timeout_s": 30},
            "image_config": image_config(size=64),
            "concurrency": 1,
        }
        script = f"""
            import json, os, signal, sys, threading, time
            import datago
            # What an interactive Python has. A process started in the background by a shell without job
            # control (nohup ... &) inherits SIGINT ignored, and Python then installs no handler for it.
            signal.signal(signal.SIGINT, signal.default_int_handler)
            client = datago.Client(json.loads({json.dumps(json.dumps(cfg))}))
            client.start()
            sent = [0.0]

            def interrupt():
                time.sleep(0.15)
                sent[0] = time.monotonic()
                os.kill(os.getpid(), signal.SIGINT)  # what Ctrl-C does: a signal to the process

            threading.Thread(target=interrupt, daemon=True).start()
            try:
                sample = client.get_sample(timeout=None)
                print("NOT-INTERRUPTED", sample, flush=True)
            except KeyboardInterrupt:
                latency = time.monotonic() - sent[0]
                # The client still works; when does the sample it was waiting for arrive?
                sample = client.get_sample(timeout=30)
                arrival = time.monotonic() - sent[0]
                print("INTERRUPTED", latency, arrival, sample is not None, flush=True)
            client.close()
        """
        started = time.monotonic()
        result = run_python(script, timeout=60)
        print(result.stdout, result.stderr[-2000:], f"total {time.monotonic() - started:.1f}s")
        assert result.returncode == 0, result.stderr
        words = result.stdout.split()
        assert words[0] == "INTERRUPTED", result.stdout
        latency, arrival, got = float(words[1]), float(words[2]), words[3] == "True"
        assert latency < 0.5, latency
        assert got
        # The sample came after the server let it go: get_sample was interrupted while really blocked.
        assert arrival > hold_s - 0.5, (latency, arrival)


@pytest.mark.parametrize("pre_encode", [False, True])
def test_fork(photo_dir, pre_encode: bool) -> None:
    # Large enough that the parent's workers are busy inside libvips when it forks.
    root, paths = photo_dir(120, size=(260, 200), fmt="JPEG")
    cfg = filesystem_config(
        root,
        image={
            "crop_and_resize": True,
            "default_image_size": 128,
            "downsampling_ratio": 16,
            "pre_encode_images": pre_encode,
        },
    )
    script = f"""
        import json, os, sys, time
        import datago
        {IMPORT_WAIT_CHILD}
        cfg = json.loads({json.dumps(json.dumps(cfg))})
        client = datago.Client(cfg)
        client.start()
        first = client.get_sample(timeout=30)
        pid = os.fork()
        if pid == 0:
            try:
                t0 = time.monotonic()
                try:
                    client.get_sample(timeout=1)
                    print("CHILD-OLD no error", flush=True)
                except datago.DatagoError as e:
                    elapsed = round(time.monotonic() - t0, 3)
                    print("CHILD-OLD", "created before fork" in str(e), elapsed, flush=True)
                try:
                    client.stats()
                except datago.DatagoError:
                    print("CHILD-OLD-STATS refused", flush=True)
                del first  # a parent's sample collected in the child must not call into the old runtime
                import gc
                gc.collect()
                with datago.Client(cfg) as new:
                    print("CHILD-NEW", len(list(new)), flush=True)
            finally:
                os._exit(0)
        status = wait_child(pid, 30)
        print("CHILD-HUNG" if status is None else f"CHILD-EXIT {{status}}", flush=True)
        rest = list(client)
        print("PARENT", 1 + len(rest), flush=True)
        client.close()
    """
    result = run_python(script, timeout=90)
    print(result.stdout, result.stderr[-3000:])
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "CHILD-HUNG" not in out
    assert "CHILD-EXIT 0" in out
    old = next(line for line in out.splitlines() if line.startswith("CHILD-OLD "))
    _, recognized, elapsed = old.split()
    # Refused at once, not after the 1 s timeout (with room for a loaded machine).
    assert recognized == "True" and float(elapsed) < 0.5
    assert "CHILD-OLD-STATS refused" in out
    # The parent's Go runtime does not survive fork(); the child's new client runs on a fresh copy.
    assert f"CHILD-NEW {len(paths)}" in out, out
    assert f"PARENT {len(paths)}" in out


def test_fork_before_first_use(photo_dir) -> None:
    """Importing datago does not start Go, so a process that forks before using datago can use it."""
    root, paths = photo_dir(20)
    cfg = filesystem_config(root)
    script = f"""
        import json, os, time
        import datago
        cfg = json.loads({json.dumps(json.dumps(cfg))})
        pid = os.fork()
        if pid == 0:
            try:
                with datago.Client(cfg) as c:
                    print("CHILD", len(list(c)), flush=True)
            finally:
                os._exit(0)
        deadline = time.monotonic() + 30
        while not os.waitpid(pid, os.WNOHANG)[0]:
            if time.monotonic() > deadline:
                os.kill(pid, 9)
                print("CHILD-HUNG", flush=True)
                break
            time.sleep(0.02)
        with datago.Client(cfg) as c:
            print("PARENT", len(list(c)), flush=True)
    """
    result = run_python(script, timeout=60)
    assert result.returncode == 0, result.stderr
    assert f"CHILD {len(paths)}" in result.stdout, result.stdout
    assert f"PARENT {len(paths)}" in result.stdout, result.stdout


def test_dropped_running_clients_are_freed(photo_dir) -> None:
    root, _ = photo_dir(150, size=(256, 256))
    cfg = filesystem_config(root, concurrency=2, prefetch_buffer_size=32, samples_buffer_size=32)
    lib = _lib.get_lib()

    def cycle() -> int:
        client = datago.Client(cfg)
        client.start()
        assert client.get_sample(timeout=30) is not None
        time.sleep(0.01)  # let the pipeline fill its buffers
        handle = client._handle
        del client  # no stop(), no close()
        return handle

    for _ in range(5):
        cycle()
    gc.collect()
    threads0, rss0 = thread_count(), rss_bytes()
    handles = [cycle() for _ in range(50)]
    gc.collect()
    time.sleep(0.2)
    threads1, rss1 = thread_count(), rss_bytes()
    print(f"threads {threads0} -> {threads1}, RSS {rss0 / 2**20:.1f} -> {rss1 / 2**20:.1f} MiB")
    out = _lib.ffi.new("char **")
    err = _lib.ffi.new("char **")
    for handle in handles:
        status = lib.datago_client_stats(handle, out, err)
        if err[0] != _lib.ffi.NULL:
            lib.datago_free(err[0])
        if status == _lib.DATAGO_OK:
            lib.datago_free(out[0])
        assert status == _lib.DATAGO_ERR_STATE, "the handle of a collected client must have been freed"
    assert threads1 <= threads0 + 4
    assert rss1 - rss0 < 60 * 2**20


def test_interpreter_exits_promptly_with_running_client(photo_dir) -> None:
    root, _ = photo_dir(400, size=(64, 64))
    cfg = filesystem_config(root, concurrency=2)
    script = f"""
        import json, threading, time
        import datago
        client = datago.Client(json.loads({json.dumps(json.dumps(cfg))}))
        client.start()
        assert client.get_sample(timeout=30) is not None
        other = datago.Client(json.loads({json.dumps(json.dumps(cfg))}))

        def reader():
            while other.get_sample() is not None:
                time.sleep(0.01)

        threading.Thread(target=reader, daemon=True).start()
        time.sleep(0.1)
        print("EXITING", flush=True)
        started = time.monotonic()
        import atexit
        atexit.register(lambda: print("ATEXIT", flush=True))
    """
    started = time.monotonic()
    result = run_python(script, timeout=30)
    elapsed = time.monotonic() - started
    print(result.stdout, result.stderr[-2000:], f"{elapsed:.2f}s")
    assert result.returncode == 0, result.stderr
    assert "EXITING" in result.stdout
    assert elapsed < 5, elapsed


def test_no_memory_growth_over_50000_samples(tmp_path: Path) -> None:
    root = tmp_path / "tiny"
    rng = np.random.default_rng(0)
    for i in range(2000):
        save(root / f"t{i:04d}.png", rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))
    cfg = filesystem_config(root, concurrency=2, prefetch_buffer_size=64, samples_buffer_size=64)
    total = 0
    rss_warm = 0
    started = time.monotonic()
    for run in range(25):
        with datago.Client(cfg) as client:
            for sample in client:
                total += 1
                arr = sample.array
                assert arr.shape == (16, 16, 3)
                if total % 997 == 0:
                    assert sample.image.size == (16, 16)
        if run == 2:
            gc.collect()
            rss_warm = rss_bytes()
    gc.collect()
    rss_end = rss_bytes()
    elapsed = time.monotonic() - started
    print(f"{total} samples in {elapsed:.1f}s, RSS {rss_warm / 2**20:.1f} -> {rss_end / 2**20:.1f} MiB")
    assert total == 50_000
    assert rss_end - rss_warm < 20 * 2**20


@pytest.mark.parametrize("use_stop", [True, False])
def test_timeout(tmp_path: Path, use_stop: bool) -> None:
    root = tmp_path / "slow"
    root.mkdir()
    _slow_tree(root, copies=2)
    cfg = filesystem_config(root, image=image_config(size=64), concurrency=1)
    client = datago.Client(cfg)
    client.start()
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        client.get_sample(timeout=0.05)
    assert time.monotonic() - t0 < 0.5
    if use_stop:
        client.stop()
        client.close()
    else:
        client.close()
    assert client.closed


def test_close_while_other_threads_wait(tmp_path: Path) -> None:
    root = _slow_tree(tmp_path / "slow", copies=3)
    client = datago.Client(filesystem_config(root, image=image_config(size=64), concurrency=1))
    client.start()
    results: list[object] = []

    def waiter() -> None:
        try:
            results.append(client.get_sample(timeout=20))
        except BaseException as exc:  # reported below
            results.append(exc)

    threads = [threading.Thread(target=waiter) for _ in range(3)]
    for t in threads:
        t.start()
    time.sleep(0.2)
    t0 = time.monotonic()
    client.close()
    for t in threads:
        t.join(10)
    assert not any(t.is_alive() for t in threads)
    print(results, f"{time.monotonic() - t0:.2f}s")
    # Each waiter got a sample that was ready, or None (the end): no error, no hang.
    assert len(results) == 3
    assert all(r is None or isinstance(r, datago.Sample) for r in results), results


class _Holder:
    """Photoroom's torch wrapper in ten lines: it owns a started client and stops it in __del__."""

    def __init__(self, config: dict) -> None:
        self.client = datago.Client(config)
        self.client.start()
        self.me = self  # a reference cycle: only the cycle collector frees it

    def __del__(self) -> None:
        self.client.stop()


@pytest.mark.parametrize("consumer_thread", [False, True])
def test_stop_from_an_owners_del_under_gc_collect(photo_dir, consumer_thread: bool) -> None:
    root, _ = photo_dir(20, size=(64, 48), fmt="PNG")
    raised: list[BaseException | None] = []
    previous = sys.unraisablehook
    sys.unraisablehook = lambda u: raised.append(u.exc_value)
    try:
        for _ in range(5):
            holder = _Holder(filesystem_config(root))
            holder.client.get_sample(timeout=30)
            if consumer_thread:
                t = threading.Thread(target=lambda c=holder.client: [None for _ in c], daemon=True)
                t.start()
            del holder
            gc.collect()
            if consumer_thread:
                t.join(30)
                assert not t.is_alive()
    finally:
        sys.unraisablehook = previous
    assert raised == [], raised
    # The finalised client's methods stay no-ops, also when called directly.
    holder = _Holder(filesystem_config(root))
    client = holder.client
    client._finalizer()  # what the collector does first in a cycle
    client.stop()
    client.close()
    assert client.closed
    del holder, client
    gc.collect()
