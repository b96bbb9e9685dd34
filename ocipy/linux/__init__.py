"""Kernel concerns, one module each; syscalls.py (on libc.py) is the one way to the calls Python lacks."""
