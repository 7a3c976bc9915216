"""The test suite, a package so that every test and helper has one import path from the
repository root: ``tests.support`` (the helpers that are not tests), ``tests.chaos``,
``tests.realclient`` and ``tests.containers``. pytest puts the repository root on the import
path for it (the first folder above ``tests/`` without an ``__init__.py``); ``bench/run``
does the same for the benchmarks."""
