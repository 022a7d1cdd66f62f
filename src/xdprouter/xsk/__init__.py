"""AF_XDP sockets for Python network functions.

An XDP program hands frames to user space by redirecting them into an
XSKMAP; the socket bound to that interface and queue finds them in its RX
ring as descriptors into its UMEM, a memory area it shares with the kernel.
This module does the whole set-up with plain syscalls, as documented in the
kernel's Documentation/networking/af_xdp.rst (``socket(AF_XDP)``, the
``XDP_UMEM_REG`` and ring-size socket options, ``mmap`` of the four rings at
their page offsets, ``bind``), and keeps the rings' producer/consumer
indices itself (the ABI libxdp's static inline helpers implement too):

* :class:`Socket`: one interface queue, its UMEM and its four rings.
  :meth:`Socket.recv` returns a :class:`Batch`: the frames' lengths and UMEM
  offsets as arrays, a memoryview into the UMEM for a frame on access (no
  copy); its buffers stay the socket's until the next ``recv`` on it or
  ``batch.release()``, then go back to the kernel. :meth:`Socket.send`
  copies frames (another socket's too: forwarding) into free UMEM buffers
  and posts them on the TX ring; :meth:`Socket.send_in_place` sends a
  batch's frames from the buffers they arrived in.
* :class:`Redirector`: the minimal XDP program (``bpf/xsk_redirect.bpf.c``)
  on an interface, and its XSKMAP (rx queue -> socket).
* :class:`Port`: both for every queue of an interface (the rx queue a frame
  lands on depends on the sender, on a veth its CPU).
* :class:`Reinjector`: frames given back to the kernel, as if received on
  their interface (a TAP and ``bpf/xsk_reinject.bpf.c`` on its TC ingress).

Copy mode works with every driver (veth included); ``mode="zerocopy"``
asks the driver to place frames in the UMEM directly and fails where it
cannot; ``"auto"`` takes zero copy where the driver has it. The ring index
arithmetic relies on x86-64's store and load ordering (the project's only
target); on weaker memory models it would need barriers.
"""

from .batch import Batch
from .port import Port, Redirector
from .reinject import Reinjector
from .socket import MODES, Socket, Statistics, XskError, default_object_path, queue_count

__all__ = [
    "MODES",
    "Batch",
    "Port",
    "Redirector",
    "Reinjector",
    "Socket",
    "Statistics",
    "XskError",
    "default_object_path",
    "queue_count",
]
