"""The cluster target of the Python client: several seqkv-servers whose
membership lives in etcd (docs/SCALE.md), as the C++ client sees them.

    import seqkv
    client = seqkv.ClusterClient("etcd://127.0.0.1:23790/seqkv")
    client.put("my-model", tokens, k, v)
    matched = client.lookup("my-model", tokens).matched_tokens

Membership is read and then watched through etcd's JSON gateway (its v3 API
over HTTP, which every etcd >= 3.4 serves on its client port) with the
standard library alone. Each call goes to the owner of the prompt's head by
rendezvous (HRW) hashing with the same hashes as the C++ client
(cluster/placement.cc, cluster/rendezvous.cc), so both pick the same node.
A member that does not answer costs a miss, never an error: lookup and get
answer "nothing stored", put goes to the next owner, and the member is left
out of routing for a short while. Hot heads (by the owners' trie visit
statistics) are stored on several owners as the C++ client does.

Needs python3-xxhash (the placement hashes are XXH3-64).

Thread-safety: as Client, a ClusterClient may be shared by threads.
"""

import base64
import json
import math
import re
import threading
import time
import urllib.error
import urllib.request

import numpy as np

from . import arrays
from . import errors
from .client import DEFAULT_MESSAGE_BYTES, Client, DeleteResult, LookupResult

# How long a member that failed a call is left out of routing, and how many
# owners in rendezvous order a call may try (cluster_client.h).
DOWN_FOR_S = 2.0
ROUTE_CANDIDATES = 4
MAX_HOT_HEADS = 1 << 16
# Per-member call deadline when none is given.
DEFAULT_MEMBER_TIMEOUT_S = 5.0
# A watch with no change for this long is opened again.
WATCH_IDLE_S = 5.0

_NAME = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
_FAILURES = (errors.UnavailableError, errors.DeadlineExceededError,
             errors.CancelledError, errors.DataLossError)


def _xxh3(data, seed=0):
    try:
        import xxhash  # Debian's python3-xxhash
    except ImportError:
        raise errors.FailedPreconditionError(
            "a cluster target needs the xxhash module (apt-get install "
            "python3-xxhash)") from None
    return xxhash.xxh3_64_intdigest(data, seed=seed)


def parse_target(target):
    """(["host:port", ...], name) of "etcd://HOST:PORT[,HOST:PORT...]/NAME";
    InvalidArgumentError naming what is wrong."""
    if not isinstance(target, str) or not target.startswith("etcd://"):
        raise errors.InvalidArgumentError(
            f"a cluster target is etcd://HOST:PORT/NAME, got {target!r}")
    rest = target[len("etcd://"):]
    endpoints, slash, name = rest.partition("/")
    if not slash or not _NAME.match(name):
        raise errors.InvalidArgumentError(
            f"{target!r}: the cluster name after the '/' must be 1 to 128 of "
            "[A-Za-z0-9._-]")
    hosts = endpoints.split(",")
    for host in hosts:
        address, colon, port = host.rpartition(":")
        if (not colon or not address or not port.isdigit()
                or not 0 < int(port) < 65536):
            raise errors.InvalidArgumentError(
                f"{target!r}: etcd endpoint {host!r} is not host:port")
    return hosts, name


def placement_key(model, namespace, tokens, chunk_tokens, prefix_chunks):
    """The placement key of a prompt (cluster/placement.h): XXH3-64 of the
    length-prefixed model and namespace, then the chunk digests of the
    prompt's first `prefix_chunks` whole chunks."""
    data = bytearray()
    for field in (model.encode(), (namespace or "").encode()):
        data += len(field).to_bytes(8, "little") + field
    if chunk_tokens > 0:
        ids = arrays.tokens_to_numpy(tokens)
        chunks = min(ids.size // chunk_tokens, prefix_chunks)
        if chunks > 0:
            data += arrays.chunk_digests(ids[:chunks * chunk_tokens],
                                         chunk_tokens)
    return _xxh3(bytes(data))


def rendezvous_score(key, member_id, weight):
    """cluster/rendezvous.h: weight / -ln(u), u from XXH3-64 of the id
    seeded with the key."""
    hashed = _xxh3(member_id.encode(), seed=key)
    u = ((hashed >> 11) + 0.5) * 2.0 ** -53
    return weight / -math.log(u)


def rank_members(key, members, limit=0):
    """Indices of `members` (dicts with "id" and "capacity_bytes"), best
    owner of `key` first; weighted by capacity when every member has one."""
    weighted = bool(members) and all(
        m.get("capacity_bytes", 0) > 0 for m in members)
    scored = [(rendezvous_score(
        key, m["id"], float(m["capacity_bytes"]) if weighted else 1.0), i)
              for i, m in enumerate(members)]
    scored.sort(key=lambda s: (-s[0], members[s[1]]["id"]))
    if limit:
        scored = scored[:limit]
    return [i for _, i in scored]


class _Placement:
    """The cluster config (/seqkv/NAME/config) with its defaults."""

    def __init__(self, config=None):
        config = config or {}
        self.prefix_chunks = int(config.get("placement_chunks", 2))
        self.replicas_hot = int(config.get("replicas_hot", 1))
        self.hot_lookups = int(config.get("hot_lookups", 8))
        self.hot_window = int(config.get("hot_window", 1024))

    @property
    def hot_probability(self):
        return self.hot_lookups / self.hot_window


class _Etcd:
    """The few calls of etcd's JSON gateway membership needs."""

    def __init__(self, endpoints, timeout):
        self.endpoints = endpoints
        self.timeout = timeout

    def _post(self, endpoint, path, body, timeout):
        request = urllib.request.Request(
            f"http://{endpoint}{path}", data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"})
        return urllib.request.urlopen(request, timeout=timeout)

    def range_prefix(self, prefix):
        """({key: value}, revision) of the keys under `prefix`."""
        body = {"key": _b64(prefix), "range_end": _b64(_range_end(prefix))}
        last = None
        for endpoint in self.endpoints:
            try:
                with self._post(endpoint, "/v3/kv/range", body,
                                self.timeout) as reply:
                    answer = json.load(reply)
                kvs = {_unb64(kv.get("key", "")): _unb64(kv.get("value", ""))
                       for kv in answer.get("kvs", [])}
                return kvs, int(answer.get("header", {}).get("revision", 0))
            except (OSError, ValueError) as error:
                last = error
        raise errors.UnavailableError(f"etcd did not answer: {last}")

    def watch(self, prefix, start_revision, stop):
        """Yields once per change under `prefix` until `stop` is set or the
        stream breaks (UnavailableError)."""
        body = {"create_request": {"key": _b64(prefix),
                                   "range_end": _b64(_range_end(prefix)),
                                   "start_revision": str(start_revision)}}
        last = None
        for endpoint in self.endpoints:
            try:
                with self._post(endpoint, "/v3/watch", body,
                                WATCH_IDLE_S) as reply:
                    while not stop.is_set():
                        line = reply.readline()
                        if not line:
                            break
                        message = json.loads(line)
                        result = message.get("result", {})
                        if int(result.get("compact_revision", 0) or 0) > 0:
                            break  # compacted: read again
                        if result.get("events"):
                            yield
                return
            except TimeoutError:
                # Quiet for WATCH_IDLE_S: the caller reads again and
                # watches anew (and sees a stop request meanwhile).
                return
            except (OSError, ValueError) as error:
                last = error
        if not stop.is_set():
            raise errors.UnavailableError(f"etcd watch broke: {last}")


def _b64(text):
    return base64.b64encode(text.encode()).decode()


def _unb64(text):
    return base64.b64decode(text).decode()


def _range_end(prefix):
    data = bytearray(prefix.encode())
    data[-1] += 1
    return data.decode()


class ClusterClient:
    """Connects to the seqkv cluster `target`, "etcd://HOST:PORT/NAME".

    api_key, tls, timeout (per call and member; default 5 s) and
    message_bytes apply to each member's connection, as in Client. Waits up
    to `wait` seconds for the membership; etcd being down is not an error
    (calls then fail as for a server that is down, until it answers).
    """

    def __init__(self, target, api_key=None, tls=None, timeout=None,
                 message_bytes=DEFAULT_MESSAGE_BYTES, wait=2.0):
        self._endpoints, self.name = parse_target(target)
        self._client_args = dict(
            api_key=api_key, tls=tls, message_bytes=message_bytes,
            timeout=DEFAULT_MEMBER_TIMEOUT_S if timeout is None else timeout)
        self._etcd = _Etcd(self._endpoints, 2.0)
        self._prefix = f"/seqkv/{self.name}/"
        self._lock = threading.Lock()
        self._members = []  # sorted by id, every state
        self._placement = _Placement()
        self._etcd_reachable = False
        self._loaded = threading.Event()
        self._clients = {}  # id -> (address, Client)
        self._down_until = {}
        self._chunk_tokens = {}
        self._registrations = {}  # model -> register_model kwargs
        self._registered_on = set()  # (member id, model)
        self._hot = {}  # head key -> None, oldest first
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, daemon=True,
                                        name=f"seqkv-cluster-{self.name}")
        self._thread.start()
        self._loaded.wait(wait)

    # --- membership ------------------------------------------------------

    def _reload(self):
        kvs, revision = self._etcd.range_prefix(self._prefix)
        members, config = [], None
        for key, value in kvs.items():
            if key == self._prefix + "config":
                try:
                    config = json.loads(value)
                except ValueError:
                    config = None  # a malformed config keeps the defaults
            elif key.startswith(self._prefix + "members/"):
                try:
                    member = json.loads(value)
                except ValueError:
                    continue
                if (isinstance(member, dict)
                        and _NAME.match(str(member.get("id", "")))
                        and member.get("address")):
                    members.append(member)
        members.sort(key=lambda m: m["id"])
        with self._lock:
            self._members = members
            self._placement = _Placement(
                config if isinstance(config, dict) else None)
            self._etcd_reachable = True
        self._loaded.set()
        return revision

    def _follow(self):
        while not self._stop.is_set():
            try:
                revision = self._reload()
                for _ in self._etcd.watch(self._prefix, revision + 1,
                                          self._stop):
                    self._reload()
            except errors.Error:
                with self._lock:
                    self._etcd_reachable = False  # the last view stays
                self._stop.wait(0.5)

    def members(self):
        """The members as last seen (dicts of their etcd records)."""
        with self._lock:
            return list(self._members)

    def serving(self):
        return [m for m in self.members() if m.get("state") == "serving"]

    def replicas_hot(self):
        """Owners a hot head is stored on (MemberView::ReplicasHot)."""
        with self._lock:
            replicas = self._placement.replicas_hot
            for m in self._members:
                if m.get("state") == "serving":
                    replicas = max(replicas, int(m.get("replicas_hot", 0)))
        return replicas

    def close(self):
        self._stop.set()
        # A daemon thread: it ends at its next change or idle timeout.
        self._thread.join(0.1)
        with self._lock:
            clients = [c for _, c in self._clients.values()]
            self._clients.clear()
        for client in clients:
            client.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # --- routing ---------------------------------------------------------

    def _client_for(self, member):
        with self._lock:
            known = self._clients.get(member["id"])
            if known and known[0] == member["address"]:
                return known[1]
        client = Client(member["address"], **self._client_args)
        with self._lock:
            old = self._clients.get(member["id"])
            self._clients[member["id"]] = (member["address"], client)
            # A new address is a restarted node: it may lack registrations.
            self._registered_on = {r for r in self._registered_on
                                   if r[0] != member["id"]}
        if old:
            old[1].close()
        return client

    def _mark_down(self, member_id):
        with self._lock:
            self._down_until[member_id] = time.monotonic() + DOWN_FOR_S

    def routes(self, key, count=ROUTE_CANDIDATES):
        """(member id, Client) of the serving members not left out, best
        owner of `key` first, among its best max(count, 4) owners."""
        serving = self.serving()
        now = time.monotonic()
        routes = []
        for index in rank_members(key, serving,
                                  max(count, ROUTE_CANDIDATES)):
            member = serving[index]
            with self._lock:
                if self._down_until.get(member["id"], 0) > now:
                    continue
            routes.append((member["id"], self._client_for(member)))
        return routes

    def _chunk_tokens_of(self, model):
        with self._lock:
            if model in self._chunk_tokens:
                return self._chunk_tokens[model]
        for member_id, client in self.routes(0):
            try:
                chunk_tokens = client.get_model(model).chunk_tokens
            except _FAILURES:
                self._mark_down(member_id)
                continue
            except errors.Error:
                continue
            with self._lock:
                self._chunk_tokens[model] = chunk_tokens
            return chunk_tokens
        return 0

    def key_of(self, model, tokens, namespace=None):
        """The placement key of a prompt, as the C++ client computes it."""
        with self._lock:
            prefix_chunks = self._placement.prefix_chunks
        return placement_key(model, namespace, tokens,
                             self._chunk_tokens_of(model), prefix_chunks)

    def owner(self, model, tokens, namespace=None):
        """The id of the member a prompt goes to now (None if none)."""
        routes = self.routes(self.key_of(model, tokens, namespace))
        return routes[0][0] if routes else None

    def _no_member(self):
        return errors.UnavailableError(
            f"cluster '{self.name}' has no serving member")

    def _ensure_registered(self, member_id, client, model):
        with self._lock:
            registration = self._registrations.get(model)
            if (registration is None
                    or (member_id, model) in self._registered_on):
                return
        client.register_model(**registration)
        with self._lock:
            self._registered_on.add((member_id, model))

    def _note_hotness(self, key, hot):
        with self._lock:
            if not hot:
                self._hot.pop(key, None)
                return
            self._hot[key] = None
            while len(self._hot) > MAX_HOT_HEADS:
                self._hot.pop(next(iter(self._hot)))

    # --- the client API --------------------------------------------------

    def register_model(self, model, layout, chunk_tokens=0, default_codec="",
                       codec_state=None):
        """Registers `model` on every member (and on members that join
        later, before their first put of it)."""
        registration = dict(model=model, layout=layout,
                            chunk_tokens=chunk_tokens,
                            default_codec=default_codec,
                            codec_state=codec_state)
        with self._lock:
            self._registrations[model] = registration
            self._chunk_tokens.pop(model, None)
        created, any_member, last = False, False, self._no_member()
        for member in self.members():
            client = self._client_for(member)
            try:
                created = client.register_model(**registration) or created
            except _FAILURES as error:
                last = error  # registered there before its first put
                continue
            any_member = True
            with self._lock:
                self._registered_on.add((member["id"], model))
        if not any_member:
            raise last
        return created

    def get_model(self, model):
        last = self._no_member()
        for member_id, client in self.routes(0):
            try:
                return client.get_model(model)
            except _FAILURES as error:
                self._mark_down(member_id)
                last = error
            except errors.Error as error:
                last = error
        raise last

    def lookup(self, model, tokens, alignment=0, namespace=None):
        """Client.lookup on the prompt's owner; a miss if it is down."""
        return self._lookup(model, tokens, alignment, namespace, None)

    def lookup_by_chunks(self, model, tokens, chunk_tokens=None, alignment=0,
                         namespace=None):
        """Client.lookup_by_chunks on the prompt's owner."""
        return self._lookup(model, tokens, alignment, namespace,
                            chunk_tokens or self._chunk_tokens_of(model))

    def _lookup(self, model, tokens, alignment, namespace, digest_chunks):
        chunk_tokens = self._chunk_tokens_of(model)
        with self._lock:
            placement = self._placement
        replicas = self.replicas_hot()
        key = self.key_of(model, tokens, namespace)
        routes = self.routes(key, replicas)
        if not routes:
            if not self.serving():
                raise self._no_member()
            return LookupResult(0, "")  # every owner is down: a miss
        result = LookupResult(0, "")
        head_probability, answered_by = 0.0, None
        with self._lock:
            known_hot = replicas > 1 and key in self._hot
        # Hot heads have replicas on the next owners: they answer for a
        # failed one, and for one that lacks the head (it was away when the
        # head was stored on the others).
        for member_id, client in routes[:max(1, replicas)]:
            try:
                answer, probability = _lookup_with_head(
                    client, model, tokens, alignment, namespace,
                    digest_chunks, placement.prefix_chunks)
            except _FAILURES:
                self._mark_down(member_id)
                continue
            except errors.NotFoundError:
                if chunk_tokens == 0:
                    raise
                answer, probability = LookupResult(0, ""), 0.0
            if answer.matched_tokens > result.matched_tokens:
                result, head_probability = answer, probability
                answered_by = member_id
            if not known_hot or result.matched_tokens > 0:
                break
        # Only the first owner sees the head's traffic: a replica's answer
        # (it serves the head only while the owner is away) changes nothing.
        if (replicas > 1 and result.matched_tokens > 0
                and answered_by == routes[0][0]):
            self._note_hotness(
                key, head_probability >= placement.hot_probability)
        return result

    def put(self, model, tokens, k, v, codec=None, namespace=None, rope=None):
        """Client.put on the prompt's owner (the next one while owners
        fail); a hot head's head also on the next replicas_hot - 1 owners."""
        replicas = self.replicas_hot()
        key = self.key_of(model, tokens, namespace)
        routes = self.routes(key, replicas + ROUTE_CANDIDATES - 1)
        last = errors.UnavailableError(
            f"cluster '{self.name}' has no reachable member")
        for i, (member_id, client) in enumerate(routes):
            try:
                self._ensure_registered(member_id, client, model)
                stored = client.put(model, tokens, k, v, codec=codec,
                                    namespace=namespace, rope=rope)
            except _FAILURES as error:
                self._mark_down(member_id)
                last = error
                continue
            with self._lock:
                hot = key in self._hot
            if replicas > 1 and hot:
                # The replicas hold the head (its first placement_chunks
                # chunks), not the rest of the prompt.
                chunk_tokens = self._chunk_tokens_of(model)
                with self._lock:
                    prefix_chunks = self._placement.prefix_chunks
                ids = arrays.tokens_to_numpy(tokens)
                n = (ids.size if chunk_tokens == 0 else
                     min(ids.size, prefix_chunks * chunk_tokens))
                head = (ids[:n], k[:, :, :n, :],
                        None if v is None else v[:, :, :n, :])
                copies = replicas - 1
                for replica_id, replica in routes[i + 1:]:
                    if copies == 0:
                        break
                    try:
                        self._ensure_registered(replica_id, replica, model)
                        replica.put(model, *head, codec=codec,
                                    namespace=namespace, rope=rope)
                        copies -= 1
                    except _FAILURES:
                        self._mark_down(replica_id)
                    except errors.Error:
                        pass  # a replica fewer
            return stored
        raise last

    def get(self, model, tokens, namespace=None, **kwargs):
        """Client.get on the prompt's owner; zero tokens if it is down."""
        chunk_tokens = self._chunk_tokens_of(model)
        replicas = self.replicas_hot()
        key = self.key_of(model, tokens, namespace)
        with self._lock:
            known_hot = replicas > 1 and key in self._hot
        # As lookup: a hot head's replicas answer for an owner that failed
        # or lacks it.
        for member_id, client in self.routes(key, replicas)[:max(1, replicas)]:
            try:
                got = client.get(model, tokens, namespace=namespace, **kwargs)
            except _FAILURES:
                self._mark_down(member_id)
                continue
            except errors.NotFoundError:
                if chunk_tokens == 0:
                    raise
                got = None
            if got is not None and (got.num_tokens > 0 or not known_hot):
                return got
            if not known_hot:
                break
        if not self.serving():
            raise self._no_member()
        return _empty_get(self, model, tokens)

    def delete(self, model, tokens=None, namespace=None):
        """Client.delete on every member (a head may be on several)."""
        members = self.members()
        if not members:
            raise errors.UnavailableError(
                f"cluster '{self.name}' has no member")
        chunks, freed = 0, 0
        for member in members:
            try:
                deleted = self._client_for(member).delete(
                    model, tokens, namespace=namespace)
            except errors.NotFoundError:
                continue
            chunks += deleted.chunks_deleted
            freed += deleted.bytes_freed
        return DeleteResult(chunks, freed)


def _lookup_with_head(client, model, tokens, alignment, namespace,
                      digest_chunks, head_chunks):
    """Client.lookup (by chunk digests with digest_chunks) that also asks
    the P̂ of the prompt's first head_chunks chunks: (LookupResult, P̂)."""
    ids = arrays.tokens_to_numpy(tokens)
    request = client._pb.LookupRequest(
        model=model, alignment=alignment, namespace=namespace or "",
        head_chunks=head_chunks)
    if digest_chunks:
        whole = ids.size // digest_chunks * digest_chunks
        request.chunk_digests = arrays.chunk_digests(ids[:whole],
                                                     digest_chunks)
        request.packed_tokens = ids[whole:].tobytes()
    else:
        request.packed_tokens = ids.tobytes()
    response = client._call(client._stub.Lookup, request)
    return (LookupResult(response.matched_tokens, response.namespace,
                         response.probability,
                         response.matched_tokens_exact),
            response.head_probability)


def _empty_get(cluster, model, tokens):
    """What Client.get answers for no match: a GetResult of zero tokens."""
    from .client import GetResult
    info = cluster.get_model(model)
    layout = info.layout
    shape = (layout.num_layers, layout.num_kv_heads, 0, layout.head_dim)
    dtype = {"bf16": np.uint16, "fp16": np.float16,
             "fp32": np.float32}.get(layout.dtype, np.uint16)
    k = np.zeros(shape, dtype=dtype)
    v = None if layout.latent else np.zeros(shape, dtype=dtype)
    return GetResult(k, v, np.zeros(0, dtype=np.int32), layout, 0, 0, 0, "")
