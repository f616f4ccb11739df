"""Same-host transfer through shared memory: memory regions registered with
the server's region socket (seqkv-server --shm_listen), so that Puts and
Gets carry offsets into them instead of data messages (docs/SHARED_MEMORY.md).

A region is a memfd (os.memfd_create) sized, sealed against shrinking
(F_SEAL_SHRINK, so the server can never fault on a page the client took
away) and mapped here; its descriptor goes to the server over a Unix
SOCK_SEQPACKET socket as SCM_RIGHTS (socket.send_fds), with a serialized
seqkv.v1.RegionRequest. Standard library only, besides numpy.

Thread-safety: a RegionConnection and a RegionPool may be shared by
threads; a Region may be read and written by any thread, but what is in it
during a call that names it is the caller's to keep still.
"""

import fcntl
import mmap
import os
import socket
import stat
import threading

import grpc
import numpy as np

from . import errors
from .layout import DTYPES

# Transports of Client(transport=...), as the CLI's --transport.
TRANSPORTS = ("shm", "grpc")

# The server's datagram limit (transport/fd_passing.h).
_MAX_DATAGRAM_BYTES = 64 << 10

# A RegionResponse's code (a google.rpc.Code) as a grpc.StatusCode.
_STATUS_CODES = {code.value[0]: code for code in grpc.StatusCode}

# Scratch regions start at 1 MiB and grow in powers of two, as the C++
# client's, so a few sizes serve every call; this many stay registered idle.
_MIN_SCRATCH_BYTES = 1 << 20
_MAX_IDLE = 2


def _region_pb():
    try:
        from seqkv.v1 import region_pb2
    except ImportError as error:
        raise ImportError(
            "seqkv: the generated stubs (seqkv.v1.region_pb2) are missing: "
            "build the seqkv_python target or pip install client/python "
            f"({error})") from error
    return region_pb2


def resolve_socket(target, transport, shm_socket):
    """The region socket a client of `target` uses, or None for messages.

    transport "grpc": None. "shm": `shm_socket` if given (it must work), else
    PATH.shm beside a target of unix:PATH when that socket exists (the
    server's default), else None: the same rule as the CLI's --transport."""
    if transport not in TRANSPORTS:
        raise errors.InvalidArgumentError(
            f"transport must be one of {', '.join(TRANSPORTS)}, got "
            f"{transport!r}")
    if transport == "grpc":
        return None
    if shm_socket:
        return str(shm_socket)
    if isinstance(target, str) and target.startswith("unix:"):
        path = target[len("unix:"):] + ".shm"
        try:
            if stat.S_ISSOCK(os.stat(path).st_mode):
                return path
        except OSError:
            pass
    return None


class Region:
    """A memory region this process created and registered: the server
    maps the same pages. `buffer` is a writable memoryview of all of it;
    `array` and `wire` give numpy views (no copies) at an offset.

    Unregistered when closed (or its connection closes); views taken of it
    keep its memory mapped here until they go."""

    def __init__(self, fd, memory, size):
        self._fd = fd
        self._mmap = memory
        self.size = size
        self.handle = b""  # the 16 bytes a RegionSlice names it by
        self._connection = None

    @property
    def buffer(self):
        return memoryview(self._mmap)

    @property
    def closed(self):
        return self._fd < 0

    def _check(self, offset, length):
        if isinstance(offset, bool) or not isinstance(offset, (int, np.integer)) \
                or offset < 0:
            raise errors.InvalidArgumentError(
                f"offset must be a non-negative int, got {offset!r}")
        if offset + length > self.size:
            raise errors.OutOfRangeError(
                f"bytes [{offset}, {offset + length}) are outside the "
                f"region's {self.size}")
        if self.closed:
            raise errors.FailedPreconditionError("the region is closed")

    def array(self, dtype, shape, offset=0):
        """A numpy array of `shape` and `dtype` viewing the region's bytes
        from `offset`: writes through it are what a Put reads."""
        dtype = np.dtype(dtype)
        shape = tuple(int(n) for n in np.atleast_1d(shape))
        length = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        self._check(offset, length)
        return np.frombuffer(self._mmap, dtype, length // dtype.itemsize,
                             int(offset)).reshape(shape)

    def wire(self, layout, num_tokens, offset=0, as_torch=False):
        """A view of `num_tokens` tokens of KV data in seqkv's wire order,
        [tokens, layers, K|V (1 for latent), kv_heads, head_dim], at
        `offset`: where put_from_region reads and get_into_region writes.
        bf16 is uint16 in numpy, bfloat16 with as_torch (a torch tensor
        sharing the region's memory)."""
        shape = (num_tokens, layout.num_layers, layout.tensors_per_layer,
                 layout.num_kv_heads, layout.head_dim)
        view = self.array(DTYPES[layout.dtype][2], shape, offset)
        if not as_torch:
            return view
        import torch  # only callers that ask for torch need it
        if layout.dtype == "bf16":
            return torch.from_numpy(view.view(np.int16)).view(torch.bfloat16)
        return torch.from_numpy(view)

    def close(self):
        """Unregisters the region and unmaps it here (once no view of it
        is left; until then the mapping lives on, unregistered)."""
        if self.closed:
            return
        connection, self._connection = self._connection, None
        if connection is not None and self.handle:
            try:
                connection.unregister(self)
            except errors.Error:
                pass  # its connection is gone: so is the server's mapping
        try:
            self._mmap.close()
        except BufferError:
            pass  # numpy views still hold it; it unmaps when they go
        os.close(self._fd)
        self._fd = -1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return (f"seqkv.Region({self.size} bytes, handle "
                f"{self.handle.hex() or '-'})")


class RegionConnection:
    """One connection to the server's region socket at `path`; its regions
    stay registered on the server until they are closed or it is.
    `authorization` as the gRPC header: "Bearer <key>", or empty."""

    def __init__(self, path, authorization=""):
        self._pb = _region_pb()
        self._authorization = authorization
        self._lock = threading.Lock()  # one request and its answer at a time
        self.tenant = ""
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self._socket.connect(path)
        except OSError as error:
            self._socket.close()
            raise errors.UnavailableError(
                f"connecting to the region socket {path}: "
                f"{error.strerror or error}") from None
        self.path = path

    def close(self):
        """Closes the socket: the server unmaps every region of it."""
        self._socket.close()

    def _exchange(self, request, fds=()):
        try:
            socket.send_fds(self._socket, [request.SerializeToString()],
                            list(fds))
            data, received, _, _ = socket.recv_fds(
                self._socket, _MAX_DATAGRAM_BYTES, 1)
        except OSError as error:
            raise errors.UnavailableError(
                f"the region socket {self.path}: {error.strerror or error}"
            ) from None
        for fd in received:
            os.close(fd)
        if not data:
            raise errors.UnavailableError(
                "the server closed the region socket")
        response = self._pb.RegionResponse()
        try:
            response.ParseFromString(data)
        except Exception:  # protobuf's DecodeError
            raise errors.DataLossError(
                "the region socket's answer does not parse") from None
        if response.code != 0:
            raise errors.error_for(_STATUS_CODES.get(response.code,
                                                     grpc.StatusCode.UNKNOWN),
                                   response.message)
        return response

    def create_region(self, nbytes):
        """A new region of `nbytes`: a memfd sealed against shrinking,
        mapped here with its pages populated, and registered. The server's
        refusal (its limits, the caller's user id) raises its status."""
        if isinstance(nbytes, bool) or not isinstance(nbytes, (int, np.integer)) \
                or nbytes <= 0:
            raise errors.InvalidArgumentError(
                f"a region needs a positive size, got {nbytes!r}")
        nbytes = int(nbytes)
        fd = os.memfd_create("seqkv-region",
                             os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            os.ftruncate(fd, nbytes)
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS,
                        fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_SEAL)
            memory = mmap.mmap(fd, nbytes, mmap.MAP_SHARED | mmap.MAP_POPULATE,
                               mmap.PROT_READ | mmap.PROT_WRITE)
        except OSError as error:
            os.close(fd)
            raise errors.ResourceExhaustedError(
                f"creating a region of {nbytes} bytes: "
                f"{error.strerror or error}") from None
        region = Region(fd, memory, nbytes)
        request = self._pb.RegionRequest()
        request.register_region.authorization = self._authorization
        try:
            with self._lock:
                response = self._exchange(request, [fd])
                self.tenant = response.tenant
        except BaseException:
            region.close()
            raise
        region.handle = response.region
        region._connection = self
        return region

    def unregister(self, region):
        """Asks the server to unmap `region`; it can no longer be named."""
        request = self._pb.RegionRequest()
        request.unregister_region.region = region.handle
        with self._lock:
            self._exchange(request)


class RegionPool:
    """Scratch regions for calls that bring their own arrays (Client.put,
    Client.get over shared memory), registered once and reused. Each
    concurrent call takes a region of its own."""

    def __init__(self, connection):
        self.connection = connection
        self._lock = threading.Lock()
        self._idle = []

    def acquire(self, nbytes):
        """A region of at least `nbytes` for one call; give it back with
        release(). Raises the server's status when it refuses a new one."""
        too_small = None
        with self._lock:
            for index, region in enumerate(self._idle):
                if region.size >= nbytes:
                    return self._idle.pop(index)
            if self._idle:  # none fits: the largest idle one makes room
                too_small = self._idle.pop()
        if too_small is not None:
            too_small.close()
        size = 1 << (max(nbytes, _MIN_SCRATCH_BYTES) - 1).bit_length()
        return self.connection.create_region(size)

    def release(self, region):
        with self._lock:
            if len(self._idle) < _MAX_IDLE:
                self._idle.append(region)
                self._idle.sort(key=lambda r: r.size)
                return
        region.close()

    def close(self):
        with self._lock:
            idle, self._idle = self._idle, []
        for region in idle:
            region.close()
        self.connection.close()
