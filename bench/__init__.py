"""Pintu's benchmarks: ``make bench`` (``python -m bench.run``) runs every suite (``exchange``,
``pki``, ``policy``, ``registry``), each rewriting its own section of docs/benchmarks.md."""
