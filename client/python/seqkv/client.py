"""A synchronous client of seqkv.v1.KvCacheService.

Thread-safety: a Client may be shared by threads; each call is independent
(grpc channels are thread-safe; each call over shared memory takes a scratch
region of its own).
"""

import dataclasses

import grpc
import numpy as np

from . import arrays
from . import errors
from . import shm
from .layout import Layout, Rope

# Bytes of KV data per Put message (and per codec state piece), as the C++
# client sends them: under gRPC's 4 MiB default message limit.
DEFAULT_MESSAGE_BYTES = 2 << 20

# The largest scratch region get() registers for one call: its size is the
# whole prompt's (what could match), and the client populates every page.
MAX_SCRATCH_BYTES = 1 << 30


def _stubs():
    try:
        from seqkv.v1 import kvcache_pb2, kvcache_pb2_grpc
    except ImportError as error:
        raise ImportError(
            "seqkv: the generated gRPC stubs (seqkv.v1.kvcache_pb2) are "
            "missing: build the seqkv_python target and put <build>/python on "
            "PYTHONPATH next to client/python, or pip install client/python "
            f"({error})") from error
    return kvcache_pb2, kvcache_pb2_grpc


@dataclasses.dataclass(frozen=True)
class Tls:
    """TLS settings: PEM contents (bytes) or file paths (str). root_cert
    None uses the system's roots; cert and key together give mTLS."""

    root_cert: object = None
    cert: object = None
    key: object = None


@dataclasses.dataclass(frozen=True)
class PutResult:
    tokens: int
    chunks_new: int
    chunks_deduped: int
    bytes_logical: int
    bytes_stored: int
    codec: str
    # The tokens by how the server stored them: coded on their own, in
    # chunks stored already, copied from a stored chunk's head (split
    # dedup), coded against the same tokens after another prefix.
    tokens_new: int = 0
    tokens_deduped: int = 0
    tokens_split_deduped: int = 0
    tokens_cross_prefix: int = 0


def _put_result(response):
    return PutResult(response.tokens, response.chunks_new,
                     response.chunks_deduped, response.bytes_logical,
                     response.bytes_stored, response.codec,
                     response.tokens_new, response.tokens_deduped,
                     response.tokens_split_deduped,
                     response.tokens_cross_prefix)


@dataclasses.dataclass(frozen=True)
class LookupResult:
    matched_tokens: int
    namespace: str
    # The server's estimate that the namespace's next lookup passes through
    # the deepest matched chunk (0.0 when nothing matched).
    probability: float = 0.0
    # Of matched_tokens, the leading ones held as they were Put (not
    # demoted by the server to a lossy tier).
    matched_tokens_exact: int = 0


@dataclasses.dataclass
class GetResult:
    """The cache of the matched prefix (or the requested range of it):
    k, v [layers, kv_heads, tokens, head_dim] (v None for latent layouts).
    Unpacks as `k, v = client.get(...)`."""

    k: object
    v: object
    tokens: np.ndarray
    layout: Layout
    matched_tokens: int
    begin_token: int
    end_token: int
    namespace: str

    @property
    def num_tokens(self):
        return self.end_token - self.begin_token

    def __iter__(self):
        return iter((self.k, self.v))


@dataclasses.dataclass
class RegionGetResult:
    """What get_into_region placed: tokens [begin_token, end_token) of the
    match, data_bytes bytes in wire order at `offset` of `region`.
    wire() views them there (no copy); kv() copies them out as k, v."""

    region: shm.Region
    offset: int
    layout: Layout
    tokens: np.ndarray
    matched_tokens: int
    begin_token: int
    end_token: int
    data_bytes: int
    namespace: str

    @property
    def num_tokens(self):
        return self.end_token - self.begin_token

    def wire(self, as_torch=False):
        """[tokens, layers, K|V, kv_heads, head_dim] in the region itself:
        valid until the region's bytes are overwritten."""
        return self.region.wire(self.layout, self.num_tokens, self.offset,
                                as_torch)

    def kv(self, as_torch=False):
        """(k, v) [layers, kv_heads, tokens, head_dim] copied out of the
        region (v None for latent layouts)."""
        return _scatter(self.layout, self.num_tokens,
                        self.region.buffer[self.offset:
                                           self.offset + self.data_bytes],
                        as_torch)


def _scatter(layout, count, data, as_torch):
    reader = arrays.TokenMajorReader(layout, count)
    if not reader.add(data) or not reader.complete:
        raise errors.DataLossError("server announced a bad data size")
    return reader.finish(as_torch)


@dataclasses.dataclass(frozen=True)
class DeleteResult:
    chunks_deleted: int
    bytes_freed: int


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    model: str
    layout: Layout
    chunk_tokens: int
    default_codec: str
    codec_state_keys: tuple


@dataclasses.dataclass(frozen=True)
class Stats:
    tenant: str
    lookups: int
    lookup_tokens: int
    hit_tokens: int
    hit_rate: float
    puts: int
    put_tokens: int
    chunks_stored: int
    chunks_deduped: int
    bytes_logical: int
    bytes_stored: int
    evictions: int
    quota_bytes: int
    usage_bytes: int


def _read_pem(value, what):
    if value is None or isinstance(value, bytes):
        return value
    try:
        with open(value, "rb") as f:
            return f.read()
    except OSError as error:
        raise errors.InvalidArgumentError(
            f"cannot read the TLS {what} {value!r}: {error.strerror}") from None


def _check_name(value, what, required=True):
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value):
        raise errors.InvalidArgumentError(
            f"{what} must be a non-empty string, got {value!r}")
    return value


def _check_count(value, what):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) \
            or not 0 <= value < 2**32:
        raise errors.InvalidArgumentError(
            f"{what} must be an int in [0, 2^32), got {value!r}")
    return int(value)


class Client:
    """Connects to a seqkv server.

    target: "host:port" or "unix:/path" (passed to grpc as is).
    api_key: sent as "authorization: Bearer <key>" on every call.
    tls: a Tls, or None for plaintext.
    timeout: per-call deadline in seconds, None for none.
    transport: "shm" moves KV bytes through shared memory regions where the
      server's region socket is on this host (shm_socket, or PATH.shm beside
      a target of unix:PATH when it exists), else in gRPC messages; "grpc"
      always in messages (docs/SHARED_MEMORY.md).
    shm_socket: the server's region socket (seqkv-server --shm_listen).
    """

    def __init__(self, target="127.0.0.1:50551", api_key=None, tls=None,
                 timeout=None, message_bytes=DEFAULT_MESSAGE_BYTES,
                 transport="shm", shm_socket=None):
        self._pb, pb_grpc = _stubs()
        _check_name(target, "target")
        if tls is not None and not isinstance(tls, Tls):
            raise errors.InvalidArgumentError("tls must be a seqkv.Tls")
        if message_bytes <= 0:
            raise errors.InvalidArgumentError("message_bytes must be positive")
        self._metadata = ((("authorization", f"Bearer {api_key}"),)
                          if api_key else None)
        self._timeout = timeout
        self._message_bytes = int(message_bytes)
        # Room for a full message plus the header; the server sends 2 MiB.
        options = [("grpc.max_receive_message_length", 64 << 20),
                   ("grpc.max_send_message_length", 64 << 20)]
        if tls is None:
            self._channel = grpc.insecure_channel(target, options=options)
        else:
            if (tls.cert is None) != (tls.key is None):
                raise errors.InvalidArgumentError(
                    "mTLS needs both a client certificate and its key")
            credentials = grpc.ssl_channel_credentials(
                root_certificates=_read_pem(tls.root_cert, "root certificate"),
                private_key=_read_pem(tls.key, "client key"),
                certificate_chain=_read_pem(tls.cert, "client certificate"))
            self._channel = grpc.secure_channel(target, credentials,
                                                options=options)
        self._stub = pb_grpc.KvCacheServiceStub(self._channel)
        self._chunk_tokens = {}  # model -> chunk size, for lookup_by_chunks
        self._layouts = {}  # model -> registered Layout, for shm Gets
        self._regions = None  # a shm.RegionPool with a region socket
        socket_path = shm.resolve_socket(target, transport, shm_socket)
        if socket_path is not None:
            try:
                self._regions = shm.RegionPool(shm.RegionConnection(
                    socket_path, f"Bearer {api_key}" if api_key else ""))
            except BaseException:
                self._channel.close()
                raise

    @property
    def uses_shared_memory(self):
        """True when KV bytes travel through shared memory regions."""
        return self._regions is not None

    def close(self):
        if self._regions is not None:
            self._regions.close()
        self._channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _call(self, method, request):
        try:
            return method(request, timeout=self._timeout,
                          metadata=self._metadata)
        except grpc.RpcError as error:
            raise errors.from_rpc_error(error) from None

    def register_model(self, model, layout, chunk_tokens=0, default_codec="",
                       codec_state=None):
        """Registers `model` with a Layout; True when created, False when an
        identical registration existed. codec_state: dict name -> bytes;
        state larger than one message goes through RegisterModelStream."""
        pb = self._pb
        _check_name(model, "model")
        if not isinstance(layout, Layout):
            raise errors.InvalidArgumentError("layout must be a seqkv.Layout")
        chunk_tokens = _check_count(chunk_tokens, "chunk_tokens")
        state = {str(k): bytes(v) for k, v in (codec_state or {}).items()}
        request = pb.RegisterModelRequest(
            model=model, layout=layout.to_proto(pb), chunk_tokens=chunk_tokens,
            default_codec=default_codec or "")
        budget = self._message_bytes
        if sum(len(v) for v in state.values()) <= budget:
            for key, blob in state.items():
                request.codec_state[key] = blob
            return self._call(self._stub.RegisterModel, request).created

        request.codec_state_bytes = sum(len(v) for v in state.values())

        def messages():
            yield pb.RegisterModelStreamRequest(registration=request)
            for key, blob in state.items():
                offset = 0
                while True:  # an empty entry still sends its key
                    yield pb.RegisterModelStreamRequest(
                        codec_state_piece=pb.CodecStatePiece(
                            key=key, data=blob[offset:offset + budget]))
                    offset += budget
                    if offset >= len(blob):
                        break

        return self._call(self._stub.RegisterModelStream,
                          messages()).registration.created

    def get_model(self, model):
        """The registration of `model` (NotFoundError if none)."""
        _check_name(model, "model")
        response = self._call(self._stub.GetModel,
                              self._pb.GetModelRequest(model=model))
        return ModelInfo(response.model, Layout.from_proto(response.layout),
                         response.chunk_tokens, response.default_codec,
                         tuple(response.codec_state_keys))

    def put(self, model, tokens, k, v, codec=None, namespace=None, rope=None):
        """Stores the cache of `tokens`: k and v [layers, kv_heads, tokens,
        head_dim] as numpy (bf16 as uint16 bits, float16, float32) or torch
        (bfloat16, float16, float32); v None for a latent (MLA) layout.
        codec: e.g. "raw", "lossless", "turbo:4"; None uses the model's or
        server's default. rope: a Rope (or "rotate_half:10000") sent with
        the layout; None leaves it to the registration."""
        pb = self._pb
        _check_name(model, "model")
        _check_name(codec, "codec", required=False)
        _check_name(namespace, "namespace", required=False)
        ids = arrays.tokens_to_numpy(tokens)
        if ids.size == 0:
            raise errors.InvalidArgumentError("tokens is empty")
        tensors, dtype = arrays.check_kv(k, v, ids.size)
        if isinstance(rope, str):
            rope = Rope.parse(rope)
        layers, heads, _, head_dim = tensors[0].shape
        layout = Layout(layers, heads, head_dim, dtype,
                        latent=len(tensors) == 1, rope=rope or Rope())
        header = pb.PutHeader(model=model, layout=layout.to_proto(pb),
                              packed_tokens=ids.tobytes(), codec=codec or "",
                              namespace=namespace or "")
        if self._regions is not None:
            # Transposed straight into shared memory; without a region (the
            # tenant's limit, say) the bytes go in messages below.
            nbytes = ids.size * layout.bytes_per_token
            region = self._acquire(nbytes)
            if region is not None:
                try:
                    arrays.token_major(tensors, 0, ids.size,
                                       out=region.wire(layout, ids.size))
                    return self._put_slice(header, region.handle, 0, nbytes)
                finally:
                    self._regions.release(region)
        budget = self._message_bytes
        # A batch of tokens at a time, each transposed once straight into
        # its message: memory stays at one message whatever the length.
        per_batch = max(1, budget // layout.bytes_per_token)

        def messages():
            yield pb.PutRequest(header=header)
            for begin in range(0, ids.size, per_batch):
                end = min(ids.size, begin + per_batch)
                data = arrays.token_major(tensors, begin, end).tobytes()
                if len(data) <= budget:
                    yield pb.PutRequest(data=data)
                    continue
                # One token larger than a message (very large layouts).
                for offset in range(0, len(data), budget):
                    yield pb.PutRequest(data=data[offset:offset + budget])

        response = self._call(self._stub.Put, messages())
        return _put_result(response)

    def lookup(self, model, tokens, alignment=0, namespace=None):
        """Length of the longest stored prefix of `tokens`, in tokens
        (rounded down to `alignment`), and the namespace it was found in."""
        _check_name(model, "model")
        _check_name(namespace, "namespace", required=False)
        ids = arrays.tokens_to_numpy(tokens)
        alignment = _check_count(alignment, "alignment")
        response = self._call(self._stub.Lookup, self._pb.LookupRequest(
            model=model, packed_tokens=ids.tobytes(), alignment=alignment,
            namespace=namespace or ""))
        return LookupResult(response.matched_tokens, response.namespace,
                            response.probability,
                            response.matched_tokens_exact)

    def lookup_by_chunks(self, model, tokens, chunk_tokens=None, alignment=0,
                         namespace=None):
        """lookup() sending each whole chunk of `chunk_tokens` ids (the
        model's chunk size; None asks GetModel once per model) as one 8-byte
        digest: for long prompts, where sending 4 bytes per token is most of
        a Lookup. A whole chunk matches fully or not at all; the ids after
        the last whole chunk match token-granular. Needs python3-xxhash."""
        _check_name(model, "model")
        _check_name(namespace, "namespace", required=False)
        ids = arrays.tokens_to_numpy(tokens)
        alignment = _check_count(alignment, "alignment")
        if chunk_tokens is None:
            chunk_tokens = self._chunk_tokens.get(model)
            if chunk_tokens is None:
                chunk_tokens = self.get_model(model).chunk_tokens
                self._chunk_tokens[model] = chunk_tokens
        if not isinstance(chunk_tokens, int) or chunk_tokens <= 0:
            raise errors.InvalidArgumentError(
                f"chunk_tokens must be a positive int, got {chunk_tokens!r}")
        whole = ids.size // chunk_tokens * chunk_tokens
        digests = arrays.chunk_digests(ids[:whole], chunk_tokens)
        response = self._call(self._stub.Lookup, self._pb.LookupRequest(
            model=model, chunk_digests=digests,
            packed_tokens=ids[whole:].tobytes(), alignment=alignment,
            namespace=namespace or ""))
        return LookupResult(response.matched_tokens, response.namespace,
                            response.probability,
                            response.matched_tokens_exact)

    def get(self, model, tokens, namespace=None, begin_token=0, end_token=0,
            alignment=0, as_torch=False, exact_only=False):
        """The cache of the longest stored prefix of `tokens` (or tokens
        [begin_token, end_token) of it) as a GetResult: k, v [layers,
        kv_heads, tokens, head_dim], numpy (bf16 as uint16) or, with
        as_torch, CPU torch tensors (bf16 as torch.bfloat16). No match gives
        zero tokens. With exact_only, the match stops at the first chunk
        the server demoted to a lossy tier. A Get whose chunks go away while
        streaming raises AbortedError (retry)."""
        pb = self._pb
        _check_name(model, "model")
        _check_name(namespace, "namespace", required=False)
        ids = arrays.tokens_to_numpy(tokens)
        alignment = _check_count(alignment, "alignment")
        begin_token = _check_count(begin_token, "begin_token")
        end_token = _check_count(end_token, "end_token")
        if end_token and end_token < begin_token:
            raise errors.InvalidArgumentError(
                f"bad token range [{begin_token}, {end_token})")
        request = pb.GetRequest(model=model, packed_tokens=ids.tobytes(),
                                namespace=namespace or "",
                                begin_token=begin_token, end_token=end_token,
                                alignment=alignment)
        if exact_only:
            request.min_fidelity = pb.FIDELITY_EXACT
        if self._regions is not None and ids.size > begin_token:
            layout = self._layout_of(model)
            if layout is not None:
                span = (end_token or ids.size) - begin_token
                capacity = min(span, ids.size - begin_token) * \
                    layout.bytes_per_token
                # Sized by the prompt, not the match (unknown until the
                # Get): beyond MAX_SCRATCH_BYTES, messages take any size.
                region = (self._acquire(capacity)
                          if capacity <= MAX_SCRATCH_BYTES else None)
                if region is not None:
                    try:
                        placed = self._get_slice(request, ids, region, 0,
                                                 capacity)
                        k, v = placed.kv(as_torch)
                    finally:
                        self._regions.release(region)
                    return GetResult(k, v, placed.tokens, placed.layout,
                                     placed.matched_tokens,
                                     placed.begin_token, placed.end_token,
                                     placed.namespace)
        header, reader = None, None
        try:
            for message in self._stub.Get(request, timeout=self._timeout,
                                          metadata=self._metadata):
                kind = message.WhichOneof("message")
                if kind == "header":
                    if header is not None:
                        raise errors.DataLossError(
                            "server sent a second Get header")
                    header = message.header
                    layout = Layout.from_proto(header.layout)
                    if not (header.begin_token <= header.end_token <= ids.size):
                        raise errors.DataLossError(
                            "server sent a bad token range")
                    count = header.end_token - header.begin_token
                    if header.data_bytes != layout.bytes_per_token * count:
                        raise errors.DataLossError(
                            "server announced a bad data size")
                    reader = arrays.TokenMajorReader(layout, count)
                elif kind == "data":
                    if header is None:
                        raise errors.DataLossError("data before the header")
                    if not reader.add(message.data):
                        raise errors.DataLossError(
                            "server sent more data than announced")
                else:
                    raise errors.DataLossError(
                        "server sent an empty Get message")
        except grpc.RpcError as error:
            raise errors.from_rpc_error(error) from None
        if header is None:
            raise errors.DataLossError("no header in Get response")
        if not reader.complete:
            raise errors.DataLossError("Get stream ended early")
        k, v = reader.finish(as_torch)
        return GetResult(k, v, ids[header.begin_token:header.end_token].copy(),
                         layout, header.matched_tokens, header.begin_token,
                         header.end_token, header.namespace)

    def delete(self, model, tokens=None, namespace=None):
        """Removes the chunk the prefix `tokens` ends in and everything
        below it; tokens None (or empty) removes the model's whole tree in
        the namespace."""
        _check_name(model, "model")
        _check_name(namespace, "namespace", required=False)
        ids = arrays.tokens_to_numpy([] if tokens is None else tokens)
        response = self._call(self._stub.Delete, self._pb.DeleteRequest(
            model=model, packed_tokens=ids.tobytes(),
            namespace=namespace or ""))
        return DeleteResult(response.chunks_deleted, response.bytes_freed)

    def stats(self):
        """The calling tenant's own counters."""
        response = self._call(self._stub.Stats, self._pb.StatsRequest())
        return Stats(**{field.name: getattr(response, field.name)
                        for field in dataclasses.fields(Stats)})

    # Same-host transfer through shared memory (docs/SHARED_MEMORY.md).

    def create_region(self, nbytes):
        """A shared memory region of `nbytes` registered with the server:
        a memfd mapped here and by the server. Put KV data in it
        (Region.wire, Region.array) and name it in put_from_region, or have
        get_into_region write there: no copy in this process at all.
        FailedPreconditionError without a region socket."""
        return self._region_pool().connection.create_region(nbytes)

    def put_from_region(self, model, tokens, region, offset=0, layout=None,
                        codec=None, namespace=None):
        """Stores the cache of `tokens` that lies in wire order ([tokens,
        layers, K|V, kv_heads, head_dim], Region.wire) at `offset` of
        `region`; the server reads it there. layout: the cache's Layout;
        None takes the model's registered one."""
        pb = self._pb
        self._region_pool()
        _check_name(model, "model")
        _check_name(codec, "codec", required=False)
        _check_name(namespace, "namespace", required=False)
        if not isinstance(region, shm.Region):
            raise errors.InvalidArgumentError("region must be a seqkv.Region")
        ids = arrays.tokens_to_numpy(tokens)
        if ids.size == 0:
            raise errors.InvalidArgumentError("tokens is empty")
        if layout is None:
            layout = self._layout_of(model)
            if layout is None:
                raise errors.FailedPreconditionError(
                    f"model {model!r} is not registered: pass its layout")
        if not isinstance(layout, Layout):
            raise errors.InvalidArgumentError("layout must be a seqkv.Layout")
        nbytes = ids.size * layout.bytes_per_token
        region._check(offset, nbytes)
        header = pb.PutHeader(model=model, layout=layout.to_proto(pb),
                              packed_tokens=ids.tobytes(), codec=codec or "",
                              namespace=namespace or "")
        return self._put_slice(header, region.handle, int(offset), nbytes)

    def get_into_region(self, model, tokens, region, offset=0, capacity=None,
                        namespace=None, begin_token=0, end_token=0,
                        alignment=0, exact_only=False):
        """Gets the match of `tokens` (or tokens [begin_token, end_token)
        of it) written by the server in wire order at `offset` of `region`,
        in at most `capacity` bytes (None: to the region's end); data that
        does not fit raises OutOfRangeError with nothing written. Returns a
        RegionGetResult: .wire() views the data in the region, .kv() copies
        it out as k, v."""
        pb = self._pb
        self._region_pool()
        _check_name(model, "model")
        _check_name(namespace, "namespace", required=False)
        if not isinstance(region, shm.Region):
            raise errors.InvalidArgumentError("region must be a seqkv.Region")
        ids = arrays.tokens_to_numpy(tokens)
        alignment = _check_count(alignment, "alignment")
        begin_token = _check_count(begin_token, "begin_token")
        end_token = _check_count(end_token, "end_token")
        if end_token and end_token < begin_token:
            raise errors.InvalidArgumentError(
                f"bad token range [{begin_token}, {end_token})")
        if capacity is None:
            region._check(offset, 0)
            capacity = region.size - int(offset)
        region._check(offset, capacity)
        request = pb.GetRequest(model=model, packed_tokens=ids.tobytes(),
                                namespace=namespace or "",
                                begin_token=begin_token, end_token=end_token,
                                alignment=alignment)
        if exact_only:
            request.min_fidelity = pb.FIDELITY_EXACT
        return self._get_slice(request, ids, region, int(offset),
                               int(capacity))

    def _region_pool(self):
        if self._regions is None:
            raise errors.FailedPreconditionError(
                "this client has no region socket (transport='shm' with the "
                "server's shm_socket, or a unix: target with one beside it)")
        return self._regions

    def _acquire(self, nbytes):
        """A scratch region of nbytes, or None to send messages instead."""
        try:
            return self._regions.acquire(nbytes)
        except errors.Error:
            # The server refused a region (the tenant's limit, the largest
            # region, a credential it cannot take on the region socket):
            # messages work regardless.
            return None

    def _layout_of(self, model):
        """The model's registered Layout, asked once; None if unknown."""
        layout = self._layouts.get(model)
        if layout is None:
            try:
                layout = self.get_model(model).layout
            except errors.NotFoundError:
                return None
            self._layouts[model] = layout
        return layout

    def _put_slice(self, header, handle, offset, nbytes):
        pb = self._pb
        messages = (pb.PutRequest(header=header),
                    pb.PutRequest(region_data=pb.RegionSlice(
                        region=handle, offset=offset, length=nbytes)))
        response = self._call(self._stub.Put, iter(messages))
        return _put_result(response)

    def _get_slice(self, request, ids, region, offset, capacity):
        request.region_target.region = region.handle
        request.region_target.offset = offset
        request.region_target.length = capacity
        header = None
        try:
            for message in self._stub.Get(request, timeout=self._timeout,
                                          metadata=self._metadata):
                if message.WhichOneof("message") != "header" or \
                        header is not None or \
                        not message.header.data_in_region:
                    raise errors.DataLossError(
                        "a Get into a region answered with more than one "
                        "header")
                header = message.header
        except grpc.RpcError as error:
            raise errors.from_rpc_error(error) from None
        if header is None:
            raise errors.DataLossError(
                "a Get into a region ended without a header")
        layout = Layout.from_proto(header.layout)
        count = header.end_token - header.begin_token
        if not (header.begin_token <= header.end_token <= ids.size) or \
                header.data_bytes != layout.bytes_per_token * count or \
                header.data_bytes > capacity:
            raise errors.DataLossError("server announced a bad data size")
        return RegionGetResult(
            region, offset, layout,
            ids[header.begin_token:header.end_token].copy(),
            header.matched_tokens, header.begin_token, header.end_token,
            header.data_bytes, header.namespace)
