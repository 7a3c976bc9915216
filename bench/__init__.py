"""The benchmarks, a package run from the repository root (``bench/run``, or one section
alone: ``python -m bench.bench_core``), so ``bench.*`` and the helpers it shares with the tests
(``tests.support``, ``tests.realclient``) import by their paths, without pytest."""
