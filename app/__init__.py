"""StructCore visual inspection: engine, service and evaluation."""

import os

# torch and faiss each run an OpenMP thread pool whose idle threads spin by
# default. On a host with few cores the spinning pool of one library starves
# the other: on 2 cores, scoring one image took 969 ms (p50) with spinning
# threads and 238 ms with passive ones (benchmarks/latency.py, see
# docs/benchmarks.md). Set before torch or faiss load; an explicit
# OMP_WAIT_POLICY in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
