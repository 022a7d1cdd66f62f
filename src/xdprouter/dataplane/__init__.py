"""The kernel-facing layers of the fast path: libbpf through ctypes, the ABI shared with C, the attached instance."""
