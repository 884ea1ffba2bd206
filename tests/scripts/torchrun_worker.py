"""One rank of the torchrun tests of tests/test_torch.py (run by ``torchrun --nproc_per_node=2``).

The dataset's configuration names no rank nor world size: the rank finds its own. With ``--init``
the worker joins a gloo process group and then removes RANK/WORLD_SIZE from its environment, so only
``torch.distributed`` can tell it; without it, only the variables torchrun sets can. For each
``--num-workers`` value it loads the folder through ``DataLoader(num_workers=n)`` and writes what it saw
to ``<out>/rank<rank>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import torch.distributed as dist
from torch.utils.data import DataLoader

from datago.torch import DatagoIterableDataset


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--init", action="store_true", help="init_process_group('gloo'), then unset RANK")
    parser.add_argument("--num-workers", default="0", help="comma-separated DataLoader num_workers values")
    args = parser.parse_args()

    rank = int(os.environ["RANK"])
    if args.init:
        dist.init_process_group("gloo")
        for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "GROUP_RANK"):
            os.environ.pop(name, None)

    config: dict[str, Any] = {
        "source_type": "filesystem",
        "source_config": {"root_path": args.root},  # no rank, no world_size
        "image_config": {"crop_and_resize": True, "default_image_size": 64, "downsampling_ratio": 16},
        "concurrency": 1,  # 2 ranks x 2 workers on 2 cores
        "equal_steps": "off",  # the plain hash split, exactly once (tests/test_cluster.py covers the others)
    }
    dataset = DatagoIterableDataset(config)
    report: dict[str, Any] = {"rank": rank, "shard": list(dataset.shard()), "runs": {}}
    for workers in (int(n) for n in args.num_workers.split(",")):
        # A batch lost between processes fails the run after 120 s instead of hanging it.
        loader = DataLoader(dataset, batch_size=None, num_workers=workers, timeout=120 if workers else 0)
        report["runs"][str(workers)] = [item["id"] for item in loader]
    if args.init:
        gathered: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(gathered, report["shard"])
        report["all_shards"] = gathered
        dist.destroy_process_group()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"rank{rank}.json").write_text(json.dumps(report))


if __name__ == "__main__":
    main()
