"""Support code of the datago tests and benchmarks (tests/ must be on sys.path; conftest.py puts it there).

- ``config``: one configuration builder; ``drain``: read a client to its end (samples or batches, stats,
  skip reports) with a hang guard;
- ``images``, ``malformed``, ``shards``: generated inputs: photo-like images, hostile image files,
  WebDataset tar shards; ``reference``: what datago must deliver, computed independently of it;
- ``dataroom_server``, ``wds_server``: loopback HTTP servers with fault injection (each also runs as a
  script, for the benchmarks); ``stalling_server``: a TCP server that never answers;
- ``process``: the checkout's paths, subprocess scripts, this process's RSS and threads; ``servers``: a free
  loopback port, waiting for a server subprocess to answer, stopping it; ``torchrun``: a one-node torchrun
  job; ``forking``: waiting for a forked child, with a hang guard, in a subprocess script;
- ``storage_cases``: the objects and the checks the Azure and GCS storage tests share.
"""
