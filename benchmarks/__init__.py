"""Benchmarks: ocipy against runc on the same bundles, in the same run.

    flock /tmp/ocipy-root-tests.lock .venv/bin/python -m benchmarks --quick

See benchmarks/README.md.
"""
