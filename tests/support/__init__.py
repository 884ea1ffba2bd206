"""Support code of the datago tests and benchmarks (tests/ must be on sys.path; conftest.py puts it there).

- ``config``: configuration builders; ``drain``: read a client to its end with a hang guard;
- ``images``, ``malformed``: generated image files, good and hostile; ``reference``: what datago must
  deliver, computed independently (Pillow, plain maths);
- ``dataroom_server``, ``wds_server``: loopback HTTP servers with fault injection (each also runs as a
  script, for the benchmarks); ``process``: the checkout's paths, subprocess scripts, RSS and threads.
"""
