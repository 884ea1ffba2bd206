"""PyTorch adapters for datago (``import datago.torch``; ``import datago`` alone never imports torch).

- :class:`DatagoIterableDataset`: a ``torch.utils.data.IterableDataset`` over a :class:`datago.Client`.
  It shards by itself: the rank and world size come from the configuration, else from
  ``torch.distributed``, else from the ``RANK``/``WORLD_SIZE`` variables torchrun sets; with
  ``DataLoader(num_workers=n)`` every (rank, worker) pair gets its own share.
- :class:`DatagoMapDataset` and :func:`collate_samples`: a map-style dataset over a
  :class:`datago.MapDataset` that fetches a whole batch of indices at once (decoded in parallel in Go),
  for any torch sampler (``RandomSampler``, ``BatchSampler``, ``DistributedSampler``...).
- :func:`sample_to_torch` and :func:`batch_to_torch`: the dicts both datasets yield, as tensors that view
  the library's pixel buffers (no copy).

Tensors are ``uint8``, height x width x 3 (``channels_first``: 3 x height x width, a permuted view);
with ``image_to_rgb8: false``, ``Sample.array``'s shape and type (uint16 for 16-bit images).
"""

from __future__ import annotations

import json
import logging
import multiprocessing.context
import multiprocessing.sharedctypes
import os
from collections.abc import Iterator, Mapping, Sequence
from multiprocessing.reduction import ForkingPickler
from typing import TYPE_CHECKING, Any

import torch
import torch.multiprocessing  # registers torch's tensor reducers with ForkingPickler
from torch.utils.data import Dataset, IterableDataset, get_worker_info

import datago
from datago import _config

logger = logging.getLogger("datago")

if TYPE_CHECKING:
    from datago import Batch, Sample

__all__ = [
    "DatagoIterableDataset",
    "DatagoMapDataset",
    "batch_to_torch",
    "collate_samples",
    "distributed_rank",
    "sample_to_torch",
    "state_from_loader",
]


def _warm_tensor_pickling() -> None:
    """Run torch's tensor reducer once, in this thread, before any DataLoader worker is forked.

    The reducer imports modules lazily. In a worker, the queue's feeder thread pickles the batches while
    the main thread makes the next one; if both import the same module at that moment, Python < 3.12 can
    raise KeyError in importlib's module lock (CPython gh-87712), the feeder drops the batch and the
    DataLoader waits for it forever (seen once in this project's tests). Imported here, the modules are
    already loaded in every worker. An empty tensor is pickled without shared memory.
    """
    ForkingPickler.dumps(torch.empty(0, dtype=torch.uint8))


_warm_tensor_pickling()


# --------------------------------------------------------------------------------------- conversions


def sample_to_torch(sample: Sample, channels_first: bool = False) -> dict[str, Any]:
    """``{"image", "id", "original_size", "metadata"}`` for one sample.

    ``image`` is ``torch.from_numpy(sample.array)``: it shares the library's buffer, which stays alive as
    long as the tensor does (tensor -> NumPy array -> cffi buffer -> sample).
    """
    image = torch.from_numpy(sample.array)
    if channels_first:
        # A grey image (image_to_rgb8 false) is height x width: one channel in front.
        image = image.unsqueeze(0) if image.ndim == 2 else image.permute(2, 0, 1)
    return {
        "image": image,
        "id": sample.id,
        "original_size": sample.original_size,
        "metadata": sample.metadata,
    }


def batch_to_torch(batch: Batch, channels_first: bool = False) -> dict[str, Any]:
    """``{"images", "ids", "original_sizes", "metadata"}`` for one batch; ``images`` (B x H x W x 3, or
    B x 3 x H x W) views the batch's single buffer (no copy)."""
    images = torch.from_numpy(batch.array)
    if channels_first:
        images = images.permute(0, 3, 1, 2)
    return {
        "images": images,
        "ids": list(batch.ids),
        "original_sizes": list(batch.original_sizes),
        "metadata": list(batch.metadata),
    }


# ---------------------------------------------------------------------------------------- ranks


def distributed_rank() -> tuple[int, int] | None:
    """(rank, world_size) of this process: from ``torch.distributed`` when it is initialised, else from
    the ``RANK`` and ``WORLD_SIZE`` environment variables (torchrun sets them); None when neither says."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return int(dist.get_rank()), int(dist.get_world_size())
    rank, world = os.environ.get("RANK"), os.environ.get("WORLD_SIZE")
    if rank is None or world is None:
        return None
    try:
        pair = int(rank), int(world)
    except ValueError as exc:
        raise ValueError(f"RANK={rank!r} and WORLD_SIZE={world!r} must be integers") from exc
    if not 0 <= pair[0] < pair[1]:
        raise ValueError(f"RANK={rank!r} must be in [0, WORLD_SIZE={world!r})")
    return pair


def _distributed() -> bool:
    """Whether torch.distributed is initialised (in this process)."""
    import torch.distributed as dist

    return bool(dist.is_available() and dist.is_initialized())


def _plannable(config: Mapping[str, Any]) -> bool:
    """Whether ``config`` gets equal_steps "pad" by default under torch.distributed: every source whose
    run can be planned. That is a filesystem source, WebDataset shards that are not .tar.gz, and the
    dataroom source without random_sampling. Remote shards are then streamed once by every rank at
    construction, to index them; ``equal_steps: "off"`` skips that and accepts uneven ranks."""
    kind = str(config.get("source_type", "")).lower()
    source = config.get("source_config") or {}
    if kind in ("filesystem", "file"):
        return True
    if kind in ("webdataset", "wds"):
        urls = source.get("url", [])
        urls = [urls] if isinstance(urls, str) else urls
        return not any(str(u).endswith((".tar.gz", ".tgz", ".tar.gz}", ".tgz}")) for u in urls)
    if kind == "db":
        return not source.get("random_sampling", False)
    return False


_warned_uneven = False


def _warn_uneven(config: Mapping[str, Any]) -> None:
    global _warned_uneven
    _warned_uneven = True
    logger.warning(
        "DatagoIterableDataset: this %s configuration cannot be planned (.tar.gz shards, or the dataroom "
        "source's random_sampling), so equal_steps stays off: ranks may yield different numbers of steps, "
        "and a collective after the shortest rank's last step waits for it forever",
        config.get("source_type"),
    )


def _gather(state: Mapping[str, Any]) -> dict[str, Any]:
    """Every rank's planned state (a collective call): a set of parts any topology can resume from."""
    import torch.distributed as dist

    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, dict(state))
    parts: dict[str, Any] = {}  # by their JSON text: a set loaded on every rank and not iterated yet
    for item in gathered:
        for part in item.get("parts", [item]) if item else []:
            parts.setdefault(json.dumps(part, sort_keys=True), part)
    return {"version": 2, "parts": list(parts.values())}


def state_from_loader(loader_state: Mapping[str, Any]) -> dict[str, Any]:
    """The planned states of every ``DatagoIterableDataset`` worker in a torchdata ``StatefulDataLoader``
    state dict (``loader.state_dict()``), as one set that any topology resumes from
    (``DatagoIterableDataset.load_state_dict``, e.g. with another ``num_workers``); under
    ``torch.distributed`` a collective, gathering every rank's. A ``StatefulDataLoader`` resuming with
    its own topology needs none of this: it gives each worker its own state back."""
    found: list[Any] = []

    def walk(node: Any) -> None:
        if isinstance(node, Mapping):
            for key, value in node.items():
                if key == "dataset_state" and isinstance(value, Mapping) and value.get("version") == 2:
                    found.extend(value.get("parts", [value]))
                else:
                    walk(value)

    walk(loader_state)
    state = {"version": 2, "parts": found}
    return _gather(state) if _distributed() else state


def _config_dict(config: Mapping[str, Any] | str) -> dict[str, Any]:
    """A private deep copy of ``config`` (a dict or its JSON text), with its source_config."""
    parsed = _config.to_dict(config)
    if not isinstance(parsed.get("source_config"), dict):
        raise datago.ConfigError("source_config: required (an object)")
    return parsed


# ------------------------------------------------------------------------------- iterable dataset


class DatagoIterableDataset(IterableDataset[dict[str, Any]]):
    """A ``torch.utils.data.IterableDataset`` streaming a :class:`datago.Client`.

    Yields ``{"image", "id", "original_size", "metadata"}`` per sample, or, when the configuration has
    ``batch_size``, ``{"images", "ids", "original_sizes", "metadata"}`` per batch: use it with
    ``DataLoader(dataset, batch_size=None)`` then, since datago already made the batches (one bucket,
    one contiguous buffer each). Tensors view the library's buffers (see :func:`sample_to_torch`).

    Sharding: ``source_config.rank`` / ``world_size`` when the configuration sets them; each one left
    out comes from ``torch.distributed`` when it is initialised (at iteration time), else from
    ``RANK``/``WORLD_SIZE``, else 0/1. In a ``DataLoader`` worker the client is created inside
    ``__iter__`` (after the fork) with ``world_size * num_workers`` shares and share
    ``rank * num_workers + worker_id``: the (rank, worker) pairs together see every sample once.
    ``limit``, ``batch_size`` and ``drop_last`` then apply per worker.

    Equal steps: under ``torch.distributed`` (initialised, any world size), a filesystem configuration
    without ``equal_steps`` gets ``equal_steps: "pad"``, so that every rank yields the same number of
    samples per epoch (README "Cluster training"); set ``"off"`` to keep the plain per-rank split.

    Resuming: with ``num_workers=0``, :meth:`state_dict` is the running client's state (the samples or
    batches yielded so far; after a complete pass, the final state), and after :meth:`load_state_dict`
    (or ``state=``) the next ``__iter__`` resumes from it, so the samples before and after are exactly
    the pass's. Each ``__iter__`` without a state loaded starts from the beginning. With ``equal_steps``
    under ``torch.distributed``, :meth:`state_dict` is a collective: every rank calls it (as
    ``torch.distributed.checkpoint`` does) and gets the states of all the ranks, which any topology
    (another world size, another ``num_workers``) can resume from. In a ``DataLoader`` worker,
    :meth:`state_dict` is that worker's state, which is what
    ``torchdata.stateful_dataloader.StatefulDataLoader`` saves and gives back to each worker. With a
    plain ``DataLoader(num_workers > 0)`` the main process cannot see the workers' clients:
    :meth:`state_dict` then raises ``RuntimeError``.
    """

    def __init__(
        self,
        config: Mapping[str, Any] | str,
        channels_first: bool = False,
        state: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.config = _config_dict(config)
        self.channels_first = channels_first
        self._state: dict[str, Any] | None = dict(state) if state is not None else None
        self._state_pid = os.getpid()  # the process that loaded _state
        self._client: datago.Client | None = None
        self._last_state: dict[str, Any] | None = None
        self._last_stats: dict[str, Any] | None = None
        self._state_error: str | None = None
        # Set by a DataLoader worker that iterates; shared memory, so that the parent can tell that its
        # state_dict() would not describe what was delivered.
        self._worker_flag: Any = multiprocessing.sharedctypes.RawValue("b", 0)
        # (rank, world_size) found in the parent when this object is pickled for a spawned worker, where
        # torch.distributed is not initialised, and whether it was.
        self._parent_rank: tuple[int, int] | None = None
        self._parent_dist = False
        self._unplannable = False  # the default equal_steps "pad" was refused: run unplanned

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_client"] = None
        state["_parent_rank"] = distributed_rank()
        state["_parent_dist"] = _distributed()
        # Shared ctypes may only travel to a process being started (a DataLoader worker); a plain pickle
        # or deepcopy gets its own flag.
        if multiprocessing.context.get_spawning_popen() is None:
            state["_worker_flag"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if self._worker_flag is None:
            self._worker_flag = multiprocessing.sharedctypes.RawValue("b", 0)

    def shard(self) -> tuple[int, int]:
        """The (rank, world_size) a client created now in this process uses (worker split included)."""
        source = self.config["source_config"]
        found = None
        if "rank" not in source or "world_size" not in source:
            found = distributed_rank() or self._parent_rank
        rank = int(source["rank"]) if "rank" in source else (found[0] if found else 0)
        world = int(source["world_size"]) if "world_size" in source else (found[1] if found else 1)
        info = get_worker_info()
        if info is not None:
            rank, world = rank * info.num_workers + info.id, world * info.num_workers
        return rank, world

    def client_config(self) -> dict[str, Any]:
        """The configuration of the client ``__iter__`` creates in this process."""
        config = json.loads(json.dumps(self.config))
        config["source_config"]["rank"], config["source_config"]["world_size"] = self.shard()
        distributed = _distributed() or (get_worker_info() is not None and self._parent_dist)
        if "equal_steps" not in config and distributed:
            if _plannable(config) and not self._unplannable:
                config["equal_steps"] = "pad"  # DDP needs the same number of steps on every rank
            elif not _warned_uneven:
                _warn_uneven(config)
        return config

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        if info is not None:
            # A worker may resume from its own state (StatefulDataLoader loads it in the worker), or from
            # a planned state, from which every share finds its own part; a plain state loaded in the
            # main process is one client's and cannot be every worker's.
            planned = self._state is not None and self._state.get("version") == 2
            if self._state is not None and not planned and self._state_pid != os.getpid():
                raise RuntimeError(
                    "DatagoIterableDataset: a state taken without equal_steps resumes with num_workers=0 "
                    "(or through torchdata's StatefulDataLoader, which gives each worker its own state)"
                )
            self._worker_flag.value = 1
        else:
            self._worker_flag.value = 0  # this iteration's state is exact again
        # Created here, not in __init__: a DataLoader worker must make its own after the fork.
        config = self.client_config()
        try:
            client = datago.Client(config, state=self._state)
        except datago.ConfigError as exc:
            # The default pad met shards it cannot plan (a prefix of .tar.gz shards): run unplanned.
            if exc.key != "equal_steps" or "equal_steps" in self.config:
                raise
            self._unplannable = True
            _warn_uneven(config)
            client = datago.Client(self.client_config(), state=self._state)
        self._state = None  # used once: the next pass starts from the beginning
        self._client, self._last_state, self._state_error = client, None, None
        return self._generate(client)

    def _generate(self, client: datago.Client) -> Iterator[dict[str, Any]]:
        try:
            for item in client:
                if isinstance(item, datago.Batch):
                    yield batch_to_torch(item, self.channels_first)
                else:
                    yield sample_to_torch(item, self.channels_first)
        finally:
            try:
                if self._client is client:
                    self._client = None
                    try:
                        self._last_state = client.state_dict()
                        self._last_stats = client.stats()
                    except datago.DatagoError as exc:  # keep the error that ended the iteration
                        self._state_error = str(exc)
            finally:
                client.close()

    def state_dict(self) -> dict[str, Any]:
        """The resume state of this process's iteration (see the class docstring); before any, the
        state loaded (or ``{}``, meaning the beginning). Under ``torch.distributed``, a planned state
        (``equal_steps``) is gathered from every rank: ``{"version": 2, "parts": [...]}``, the same on
        every rank. Raises RuntimeError when plain DataLoader workers did the iterating."""
        if get_worker_info() is None and self._worker_flag.value:
            raise RuntimeError(
                "DatagoIterableDataset.state_dict() is only supported with DataLoader(num_workers=0) or "
                "torchdata's StatefulDataLoader: this dataset was iterated in worker processes, whose "
                "clients the main process cannot see"
            )
        state = self._own_state()
        # Every rank takes the same decision (from the configuration), so that all join the collective.
        planned = self.client_config().get("equal_steps", "off") != "off"
        if get_worker_info() is None and _distributed() and planned:
            return _gather(state)
        return state

    def _own_state(self) -> dict[str, Any]:
        if self._state_error is not None:
            raise RuntimeError(f"the last iteration failed, it left no resume state: {self._state_error}")
        if self._client is not None:
            return self._client.state_dict()
        if self._last_state is not None:
            return dict(self._last_state)
        return dict(self._state) if self._state is not None else {}

    def stats(self) -> dict[str, Any]:
        """This process's client's ``stats()`` (padding, excess, left_out of a planned run...): the running
        iteration's, else the last one's; ``{}`` before any."""
        client = self._client
        if client is not None:
            return client.stats()
        return dict(self._last_stats) if self._last_stats is not None else {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resume from ``state`` (from :meth:`state_dict`) at the next ``__iter__``; ``{}`` means the
        beginning."""
        self._state = dict(state) if state else None
        self._state_pid = os.getpid()
        self._last_state, self._state_error = None, None


# ------------------------------------------------------------------------------------ map dataset


class DatagoMapDataset(Dataset[dict[str, Any]]):
    """A map-style torch dataset over :class:`datago.MapDataset` (filesystem source: index i is the
    i-th file in sorted order) that loads a whole batch of indices at once.

    With ``DataLoader(dataset, batch_size=32, shuffle=True, collate_fn=collate_samples)``, or any
    ``sampler`` / ``batch_sampler`` (e.g. ``BatchSampler(RandomSampler(dataset), 32, drop_last=False)``),
    the DataLoader hands each batch of indices to :meth:`__getitems__`, which decodes them in parallel
    in Go (``MapDataset.get_many``) instead of one ``__getitem__`` after another.

    Items are the dicts of :func:`sample_to_torch` plus ``"index"``. A file that cannot be decoded is
    left out of its batch (so a batch may be shorter; see ``stats``); ``dataset[i]`` raises for it.
    ``config`` may be a configuration (dict or JSON) or a :class:`datago.MapDataset`. Each process makes
    its own ``datago.MapDataset`` from the configuration when it first needs one (a DataLoader worker
    cannot use its parent's), so a ``datago.MapDataset`` given directly only works in its own process,
    i.e. with ``num_workers=0``.
    """

    def __init__(
        self, config: Mapping[str, Any] | str | datago.MapDataset, channels_first: bool = False
    ) -> None:
        super().__init__()
        self.channels_first = channels_first
        self._pid = os.getpid()
        if isinstance(config, datago.MapDataset):
            self.config: dict[str, Any] | None = None
            self._dataset: datago.MapDataset | None = config
        else:
            self.config = _config_dict(config)
            self._dataset = None
        self._len = len(self.map_dataset)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_dataset"] = None  # the library handle belongs to this process
        return state

    @property
    def map_dataset(self) -> datago.MapDataset:
        """This process's :class:`datago.MapDataset` (created on first use in a new process)."""
        if self._dataset is None or self._pid != os.getpid():
            if self.config is None:
                raise RuntimeError(
                    "DatagoMapDataset was given a datago.MapDataset, which cannot be used in another "
                    "process (a DataLoader worker): pass the configuration instead"
                )
            self._dataset, self._pid = datago.MapDataset(self.config), os.getpid()
            if len(self._dataset) != getattr(self, "_len", len(self._dataset)):
                raise RuntimeError(
                    f"the folder changed: {len(self._dataset)} files in process {self._pid}, "
                    f"{self._len} when the dataset was created"
                )
        return self._dataset

    @property
    def ids(self) -> list[str]:
        """File paths, in index order."""
        return list(self.map_dataset.ids)

    @property
    def stats(self) -> dict[str, Any]:
        """This process's ``datago.MapDataset.stats`` (undecodable files, ...)."""
        return self.map_dataset.stats

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = sample_to_torch(self.map_dataset[int(index)], self.channels_first)
        item["index"] = int(index)
        return item

    def __getitems__(self, indices: Sequence[int]) -> list[dict[str, Any]]:
        """The items of ``indices`` (decoded in parallel), without those that could not be decoded."""
        wanted = [int(i) for i in indices]
        out = []
        for index, sample in zip(wanted, self.map_dataset.get_many(wanted), strict=True):
            if sample is not None:
                item = sample_to_torch(sample, self.channels_first)
                item["index"] = index
                out.append(item)
        return out

    def close(self) -> None:
        """Release this process's ``datago.MapDataset``."""
        if self._dataset is not None and self._pid == os.getpid():
            self._dataset.close()
        self._dataset = None


def collate_samples(items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Collate the item dicts of :func:`sample_to_torch` (e.g. a :class:`DatagoMapDataset` batch).

    ``images`` is one stacked tensor when every image has the same shape (a copy, B x ...), else the list
    of the images (with ``crop_and_resize`` a random batch mixes buckets); the other keys become lists
    (``indices`` too when the items have ``index``).
    """
    images = [item["image"] for item in items]
    same = bool(images) and all(image.shape == images[0].shape for image in images)
    out: dict[str, Any] = {
        "images": torch.stack(images) if same else images,
        "ids": [item["id"] for item in items],
        "original_sizes": [item["original_size"] for item in items],
        "metadata": [item["metadata"] for item in items],
    }
    if items and "index" in items[0]:
        out["indices"] = [item["index"] for item in items]
    return out
