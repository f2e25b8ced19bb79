"""golemd's benchmark suite, run by hand (`make bench`), never in CI.

`python -m bench.run` starts each system fresh (the floor, golemd with its
journal on and off, and Ray and Restate when they are installed), runs the
same workloads against each, prints every figure with its ratio to the
floor, and writes bench/RESULTS.md. See bench/README.md.

Import-light on purpose: bench.ray_bench and bench.restate_bench run in
other virtualenvs that have neither golemd's dependencies nor golemd.
"""
