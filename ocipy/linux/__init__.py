"""Kernel concerns, one module each; syscalls.py is the only ctypes layer."""
