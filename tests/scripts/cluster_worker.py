"""One rank of tests/test_cluster.py's torchrun jobs (gloo, CPU): equal steps, the all-reduce hang
check, checkpoints and elastic resume through ``DatagoIterableDataset``.

Every rank joins a gloo group, loads ``--root`` through ``DataLoader(DatagoIterableDataset,
num_workers=N)`` and records the ids it got at each step. With ``--allreduce`` each step ends with a
DDP-style ``all_reduce`` (the collective a rank that ran out first leaves the others blocked in).
``--checkpoints 3,10`` takes ``dataset.state_dict()`` (a collective: every rank's state) after those
steps; ``--resume a.json,b.json`` instead runs one pass per saved state, resumed from it. With
``--stateful`` the loader is torchdata's ``StatefulDataLoader`` and the checkpoints are its state,
resumed by a new loader in the same job. Writes ``<out>/rank<rank>.json``.
"""

from __future__ import annotations

import argparse
import datetime
import json
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader

from datago.torch import DatagoIterableDataset, state_from_loader


def steps(loader: Any, allreduce: bool, stop: int | None = None) -> list[list[str]]:
    """The ids of each step, stopping after ``stop`` steps when given."""
    out: list[list[str]] = []
    for item in loader:
        out.append(item["ids"] if "ids" in item else [item["id"]])
        if allreduce:
            total = torch.ones(1)
            dist.all_reduce(total)  # what DDP's backward does once per step
            assert int(total.item()) == dist.get_world_size()
        if stop is not None and len(out) == stop:
            break
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", help="a folder (filesystem source, random_sampling, seed 7)")
    parser.add_argument("--source", help="instead of --root: JSON of source_type and source_config")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--equal-steps", default=None, help="off, pad or drop (default: the dataset's)")
    parser.add_argument("--num-workers", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--allreduce", action="store_true")
    parser.add_argument("--checkpoints", default="", help="comma-separated step counts")
    parser.add_argument("--resume", default="", help="comma-separated state files")
    parser.add_argument("--stateful", action="store_true", help="torchdata's StatefulDataLoader")
    parser.add_argument("--timeout", type=float, default=60)
    parser.add_argument("--batch-size", type=int, default=0, help="batches (crop_and_resize at 64 px)")
    parser.add_argument("--bucket-per-step", action="store_true")
    args = parser.parse_args()

    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=args.timeout))
    rank = dist.get_rank()
    source = (
        json.loads(args.source)
        if args.source
        else {
            "source_type": "filesystem",
            "source_config": {"root_path": args.root, "random_sampling": True, "seed": 7},
        }
    )
    config: dict[str, Any] = {
        **source,
        "concurrency": 1,  # up to 4 ranks x 2 workers on 2 cores
        "samples_buffer_size": 8,
        "prefetch_buffer_size": 8,
        "epochs": args.epochs,
    }
    if args.equal_steps:
        config["equal_steps"] = args.equal_steps
    if args.batch_size:
        config["batch_size"] = args.batch_size
        config["image_config"] = {"crop_and_resize": True, "default_image_size": 64, "downsampling_ratio": 16}
    if args.bucket_per_step:
        config["bucket_per_step"] = True

    def loader(dataset: DatagoIterableDataset) -> Any:
        options: dict[str, Any] = {"batch_size": None, "num_workers": args.num_workers}
        if args.num_workers:
            options["timeout"] = 120
        if args.stateful:
            from torchdata.stateful_dataloader import StatefulDataLoader

            return StatefulDataLoader(dataset, **options)
        return DataLoader(dataset, **options)

    report: dict[str, Any] = {"rank": rank, "world": dist.get_world_size()}
    if args.resume:
        report["resumed"] = []
        for path in args.resume.split(","):
            dataset = DatagoIterableDataset(config, state=json.loads(Path(path).read_text()))
            report["resumed"].append(steps(loader(dataset), args.allreduce))
    elif args.stateful:
        # Checkpoint the loader itself (its workers' states), resume a new loader from it.
        report["checkpoints"] = []
        for stop in [int(k) for k in args.checkpoints.split(",") if k]:
            first = loader(DatagoIterableDataset(config))
            before = steps(first, args.allreduce, stop)
            state = first.state_dict()
            # Every worker's state of every rank, for a resume on another topology (a collective).
            path = args.out / f"state-{stop}.json"
            parts = state_from_loader(state)
            if rank == 0:
                args.out.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(parts))
            second = loader(DatagoIterableDataset(config))
            second.load_state_dict(state)
            after = steps(second, args.allreduce)
            report["checkpoints"].append({"before": before, "after": after, "state": str(path)})
    else:
        dataset = DatagoIterableDataset(config)
        stops = sorted(int(k) for k in args.checkpoints.split(",") if k)
        report["steps"], report["states"], report["shapes"] = [], [], []
        it = iter(loader(dataset))
        for stop in stops + [None]:
            while stop is None or len(report["steps"]) < stop:
                try:
                    item = next(it)
                except StopIteration:
                    break
                report["steps"].append(item["ids"] if "ids" in item else [item["id"]])
                report["shapes"].append(list(item["images"].shape) if "images" in item else None)
                if args.allreduce:
                    total = torch.ones(1)
                    dist.all_reduce(total)
            if stop is not None:
                state = dataset.state_dict()  # a collective: every rank's state, on every rank
                path = args.out / f"state-{stop}.json"
                if rank == 0:
                    args.out.mkdir(parents=True, exist_ok=True)
                    path.write_text(json.dumps(state))
                report["states"].append(str(path))
    dist.barrier()
    dist.destroy_process_group()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"rank{rank}.json").write_text(json.dumps(report))


if __name__ == "__main__":
    main()
