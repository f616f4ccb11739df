// seqkv-server: the KV-cache store. See README.md for flags and setup.
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <signal.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/flags/internal/program_name.h"
#include "absl/flags/internal/usage.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "base/allocator.h"
#include "proto/grpc_transport.h"
#include "server/admin_server.h"
#include "server/cache_engine.h"
#include "server/cluster_join.h"
#include "server/config.h"
#include "server/kvcache_service.h"
#include "server/reflection_v1.h"
#include "server/region_plane.h"
#include "server/rpc_metrics.h"
#include "server/tenants.h"
#include "server/tiers.h"
#include "spdlog/spdlog.h"
#include "storage/kv_store.h"
#include "storage/store_repair.h"

ABSL_FLAG(std::string, data_dir, "./seqkv-data", "RocksDB directory");
ABSL_FLAG(std::string, listen, "127.0.0.1:50551",
          "gRPC address: host:port (port 0 picks one), or unix:/path/to.sock "
          "for a Unix domain socket (e.g. in a volume shared with the "
          "inference worker); a stale socket file there is replaced");
ABSL_FLAG(std::string, admin_listen, "127.0.0.1:50552",
          "admin HTTP address host:port; empty disables it. Off loopback it "
          "needs the config's admin token");
ABSL_FLAG(std::string, probe_listen, "",
          "host:port serving only /healthz and /readyz, unauthenticated, for "
          "a kubelet's or load balancer's probes; 0.0.0.0 is allowed (e.g. "
          "0.0.0.0:50553). Empty: none (the admin address serves them too)");
ABSL_FLAG(std::string, config, "", "YAML config file (tenants, quotas, TLS)");
ABSL_FLAG(std::string, default_codec, "lossless",
          "codec for Puts that name none and models without a default");
ABSL_FLAG(uint32_t, chunk_tokens, 256,
          "tokens per trie chunk for models registered without one");
ABSL_FLAG(
    bool, sync_writes, true,
    "fsync the WAL before acknowledging a Put (durable across power loss)");
ABSL_FLAG(std::string, ready_file, "",
          "write {\"grpc_port\":N,\"admin_port\":M} here once serving");
ABSL_FLAG(uint64_t, capacity_bytes, 0,
          "evict chunks (--retention picks which), fairly across tenants, "
          "beyond this many stored bytes (0: unlimited; overrides the "
          "config's)");
ABSL_FLAG(std::string, retention, "plt",
          "which chunk a full namespace or store evicts first: plt (the "
          "least expected benefit per stored byte, from the probabilistic "
          "trie's reuse estimates) or lru (the least recently used)");
ABSL_FLAG(std::string, tiers, "lossy,tokens",
          "what a chunk becomes under quota or capacity pressure before it "
          "is removed: lossy (re-encoded, in the background, to two lossy "
          "tiers at the errors of turbo:4 and turbo:3, as --tier_shares "
          "says), tokens (its KV dropped, its tokens kept so that a "
          "returning prefix is recognised), lossy,tokens (both), or none "
          "(removed at once); a tenant's `tiers` in the config overrides "
          "it");
ABSL_FLAG(std::string, tier_shares, "0.8,0.1",
          "with lossy tiers, EXACT,LOSSY_1: the fractions of a limit (an "
          "evicting quota, or --capacity_bytes) held exact and at lossy "
          "tier 1 before the least valued chunks are demoted; tier 2 takes "
          "the rest. Smaller shares keep more prefixes, fewer of them "
          "exact");
ABSL_FLAG(bool, split_dedup, true,
          "store only the new part of a chunk whose head a stored sibling "
          "holds (same prefix, diverging inside the chunk): the head is "
          "copied from the sibling on Get. With codecs that code against "
          "references (lossless, predictive)");
ABSL_FLAG(bool, cross_prefix, true,
          "code a chunk's token runs that a stored chunk holds after another "
          "prefix, at another position (a RAG document, a system prompt) as "
          "residuals against that chunk. With codecs that code against "
          "references (lossless, predictive)");
ABSL_FLAG(uint64_t, decoded_chunk_cache_bytes, uint64_t{128} << 20,
          "keep up to this many bytes of decoded chunks that others were "
          "coded against (--split_dedup, --cross_prefix), for the next Gets "
          "and Puts that decode them; they count against "
          "--memory_budget_bytes (0: keep none)");
ABSL_FLAG(double, plt_attention_tokens, 0,
          "with --retention=plt, weight a chunk's value by the prefill work a "
          "hit saves: tokens x (1 + mid position / this), the position at "
          "which the model's attention costs as much as the rest of a "
          "token's prefill (0: every token saved counts the same, which "
          "maximizes the token hit rate)");
ABSL_FLAG(double, plt_half_life_lookups, 1024,
          "half-life of the decayed visit counts behind each chunk's "
          "probability P̂, in lookups of its namespace");
ABSL_FLAG(uint32_t, codec_threads, 0,
          "threads that encode and decode chunks (0: one per hardware thread)");
ABSL_FLAG(uint64_t, chunk_buffer_pool_bytes, uint64_t{256} << 20,
          "keep up to this many bytes of idle chunk buffers (Put chunks, "
          "Get messages) for the next requests instead of freeing them "
          "(0: keep none)");
ABSL_FLAG(uint64_t, max_codec_state_bytes, seqkv::kMaxCodecStateBytes,
          "the most codec state (calibration profile, layer-0 table...) one "
          "model may register, in bytes; at most 1536 MiB");
ABSL_FLAG(absl::Duration, idle_release_after, absl::Seconds(10),
          "after this long without a Put, Get or Delete, free the idle chunk "
          "buffers and hand the allocator's freed memory back to the kernel");
ABSL_FLAG(uint64_t, payload_file_min_bytes, 256 << 10,
          "store chunk payloads of at least this many bytes as files of "
          "their own under --data_dir/payloads rather than in RocksDB "
          "(0: never; files written before stay readable)");
ABSL_FLAG(uint64_t, memory_budget_bytes, 0,
          "the most memory requests may hold at once: chunks being put, "
          "chunks being decoded and sent, codec state being registered, idle "
          "chunk buffers. A request that would exceed it waits up to "
          "--memory_wait, then fails with RESOURCE_EXHAUSTED (0: a quarter of "
          "physical memory or of the cgroup's limit, whichever is smaller)");
ABSL_FLAG(absl::Duration, memory_wait, absl::Seconds(2),
          "how long a request waits for the memory budget before "
          "RESOURCE_EXHAUSTED");
ABSL_FLAG(uint64_t, max_chunk_bytes, uint64_t{256} << 20,
          "the largest chunk (layout bytes per token x chunk_tokens) a model "
          "may define; Puts and registrations of larger ones fail with "
          "RESOURCE_EXHAUSTED. Lowered to the memory budget when over it");
ABSL_FLAG(uint32_t, stream_idle_timeout_s, 30,
          "cancel a Put, Get or RegisterModelStream that waits this many "
          "seconds on its client (for its next message, or to read the "
          "next Get message) with DEADLINE_EXCEEDED (0: never)");
ABSL_FLAG(uint32_t, max_streams_per_tenant, 64,
          "Put, Get and RegisterModelStream calls one tenant may hold open "
          "at once; more fail with RESOURCE_EXHAUSTED (0: unlimited)");
ABSL_FLAG(uint32_t, max_threads, 512,
          "threads the gRPC server may run calls on; calls beyond them fail "
          "with RESOURCE_EXHAUSTED");
ABSL_FLAG(std::string, log_level, "info", "trace, debug, info, warn or error");
ABSL_FLAG(uint64_t, reserved_disk_bytes, uint64_t{64} << 20,
          "refuse writes (RESOURCE_EXHAUSTED; reads go on, /readyz turns 503) "
          "while the data directory's disk has less than this many bytes "
          "free besides what the memtables need to flush; writes resume by "
          "themselves once space is freed (0: no reserve)");
ABSL_FLAG(absl::Duration, counters_save_interval, absl::Seconds(10),
          "save the request counters this often (and at shutdown), so a "
          "crash loses at most this much of them");
ABSL_FLAG(bool, repair, false,
          "repair --data_dir (RocksDB's RepairDB, then drop chunks whose "
          "record, parent or payload is lost and recount usage), print what "
          "was done and exit; the server must not be running");

namespace seqkv {
namespace {

bool IsLoopbackOrUnix(const std::string& address) {
  return absl::StartsWith(address, "unix:") ||
         absl::StartsWith(address, "127.") ||
         absl::StartsWith(address, "localhost:") ||
         absl::StartsWith(address, "[::1]:");
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  return std::string(std::istreambuf_iterator<char>(in), {});
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> ServerCredentials(
    const TlsConfig& tls) {
  if (!tls.enabled()) return grpc::InsecureServerCredentials();
  grpc::SslServerCredentialsOptions options(
      tls.client_ca_file.empty() ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
      : tls.require_client_cert
          ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
          : GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY);
  auto cert = ReadFile(tls.cert_file);
  if (!cert.ok()) return cert.status();
  auto key = ReadFile(tls.key_file);
  if (!key.ok()) return key.status();
  options.pem_key_cert_pairs.push_back({*key, *cert});
  if (!tls.client_ca_file.empty()) {
    auto ca = ReadFile(tls.client_ca_file);
    if (!ca.ok()) return ca.status();
    options.pem_root_certs = *ca;
  }
  return grpc::SslServerCredentials(options);
}

// --repair: rebuilds the store and says what it did.
int RepairAndReport(const KvStoreOptions& options) {
  auto report = RepairStore(options);
  if (!report.ok()) {
    spdlog::error("repair failed: {}", report.status().ToString());
    return 1;
  }
  std::cout << report->Describe();
  return 0;
}

int Serve() {
  spdlog::set_level(spdlog::level::from_str(absl::GetFlag(FLAGS_log_level)));
  const std::string data_dir = absl::GetFlag(FLAGS_data_dir);
  std::error_code error;
  std::filesystem::create_directories(data_dir, error);
  if (error) {
    spdlog::error("cannot create --data_dir {}: {}", data_dir, error.message());
    return 1;
  }
  KvStoreOptions store_options;
  store_options.path = data_dir;
  store_options.sync_commits = absl::GetFlag(FLAGS_sync_writes);
  store_options.payload_file_min_bytes =
      absl::GetFlag(FLAGS_payload_file_min_bytes);
  store_options.reserved_disk_bytes = absl::GetFlag(FLAGS_reserved_disk_bytes);
  if (absl::GetFlag(FLAGS_repair)) return RepairAndReport(store_options);
  auto store = KvStore::Open(store_options);
  if (!store.ok()) {
    spdlog::error("{}", store.status().ToString());
    return 1;
  }
  EngineOptions engine_options;
  engine_options.default_codec = absl::GetFlag(FLAGS_default_codec);
  engine_options.default_chunk_tokens = absl::GetFlag(FLAGS_chunk_tokens);
  engine_options.codec_threads = absl::GetFlag(FLAGS_codec_threads);
  engine_options.chunk_buffer_pool_bytes =
      absl::GetFlag(FLAGS_chunk_buffer_pool_bytes);
  engine_options.idle_after = absl::GetFlag(FLAGS_idle_release_after);
  engine_options.decoded_chunk_cache_bytes =
      absl::GetFlag(FLAGS_decoded_chunk_cache_bytes);
  engine_options.references = {
      .split_dedup = absl::GetFlag(FLAGS_split_dedup),
      .cross_prefix = absl::GetFlag(FLAGS_cross_prefix)};
  if (const std::string retention = absl::GetFlag(FLAGS_retention);
      retention == "plt") {
    engine_options.index.retention = RetentionPolicy::kPlt;
  } else if (retention == "lru") {
    engine_options.index.retention = RetentionPolicy::kLru;
  } else {
    spdlog::error("--retention must be plt or lru, got '{}'", retention);
    return 1;
  }
  if (auto tiers = ParseTierPolicy(absl::GetFlag(FLAGS_tiers)); tiers.ok()) {
    engine_options.tiers = *tiers;
    engine_options.index.rank_by_logical_bytes = tiers->lossy;
  } else {
    spdlog::error("--{}", std::string(tiers.status().message()));
    return 1;
  }
  if (auto shares = ParseTierShares(absl::GetFlag(FLAGS_tier_shares));
      shares.ok()) {
    engine_options.demotion.shares = *shares;
  } else {
    spdlog::error("--{}", std::string(shares.status().message()));
    return 1;
  }
  engine_options.index.estimator.half_life_lookups =
      absl::GetFlag(FLAGS_plt_half_life_lookups);
  engine_options.index.estimator.attention_crossover_tokens =
      absl::GetFlag(FLAGS_plt_attention_tokens);
  if (!(engine_options.index.estimator.half_life_lookups >= 1)) {
    spdlog::error("--plt_half_life_lookups must be at least 1");
    return 1;
  }
  engine_options.memory.limit_bytes = absl::GetFlag(FLAGS_memory_budget_bytes);
  if (engine_options.memory.limit_bytes == 0)
    engine_options.memory.limit_bytes = DefaultMemoryBudgetBytes();
  engine_options.memory.max_wait = absl::GetFlag(FLAGS_memory_wait);
  engine_options.max_chunk_bytes = absl::GetFlag(FLAGS_max_chunk_bytes);
  if (engine_options.max_chunk_bytes == 0) {
    spdlog::error("--max_chunk_bytes must be positive");
    return 1;
  }
  if (engine_options.max_chunk_bytes > engine_options.memory.limit_bytes) {
    // A chunk larger than the budget could never be assembled.
    spdlog::warn(
        "--max_chunk_bytes {} is over the memory budget; using the budget, "
        "{} bytes (--memory_budget_bytes)",
        engine_options.max_chunk_bytes, engine_options.memory.limit_bytes);
    engine_options.max_chunk_bytes = engine_options.memory.limit_bytes;
  }
  if (engine_options.chunk_buffer_pool_bytes >
      engine_options.memory.limit_bytes / 2) {
    engine_options.chunk_buffer_pool_bytes =
        engine_options.memory.limit_bytes / 2;
    spdlog::info(
        "keeping at most {} bytes of idle chunk buffers: half the memory "
        "budget",
        engine_options.chunk_buffer_pool_bytes);
  }
  spdlog::info("memory budget for requests: {} bytes",
               engine_options.memory.limit_bytes);
  if (engine_options.idle_after <= absl::ZeroDuration()) {
    spdlog::error("--idle_release_after must be positive");
    return 1;
  }
  engine_options.counters_save_interval =
      absl::GetFlag(FLAGS_counters_save_interval);
  if (engine_options.counters_save_interval <= absl::ZeroDuration()) {
    spdlog::error("--counters_save_interval must be positive");
    return 1;
  }
  engine_options.on_idle = [] {
    if (auto status = ReleaseFreedMemory(); !status.ok())
      spdlog::warn("releasing freed memory: {}", status.ToString());
  };
  if (engine_options.default_chunk_tokens == 0 ||
      engine_options.default_chunk_tokens > 65536) {
    spdlog::error("--chunk_tokens must be in [1, 65536]");
    return 1;
  }
  CacheEngine engine(store->get(), engine_options);
  if (auto status = engine.Start(); !status.ok()) {
    spdlog::error("{}", status.ToString());
    return 1;
  }

  const std::string listen = absl::GetFlag(FLAGS_listen);
  auto cluster = ClusterJoin::FromFlags(listen);
  if (!cluster.ok()) {
    spdlog::error("{}", std::string(cluster.status().message()));
    return 1;
  }
  const std::string config_path = absl::GetFlag(FLAGS_config);
  ServerConfig config;
  if (!config_path.empty()) {
    auto loaded = LoadConfig(config_path);
    if (!loaded.ok()) {
      spdlog::error("{}", loaded.status().ToString());
      return 1;
    }
    config = std::move(*loaded);
  }
  if (absl::GetFlag(FLAGS_capacity_bytes) > 0)
    config.capacity_bytes = absl::GetFlag(FLAGS_capacity_bytes);
  std::shared_ptr<const TenantDirectory> directory;
  if (config_path.empty()) {
    directory = TenantDirectory::OpenAccess();
    if (!IsLoopbackOrUnix(listen)) {
      spdlog::error(
          "refusing to serve {} without --config: with no tenants there is "
          "no authentication, so only loopback or unix: addresses are allowed",
          listen);
      return 1;
    }
    spdlog::warn(
        "no --config: one tenant 'default', no authentication, loopback only");
  } else {
    directory = TenantDirectory::FromConfig(config);
    spdlog::info("{} tenants, {} shared namespaces from {}",
                 config.tenants.size(), config.shared_namespaces.size(),
                 config_path);
  }
  engine.SetLimits(directory->Limits(), config.capacity_bytes);
  TenantDirectoryHolder tenants(directory);
  auto credentials = ServerCredentials(config.tls);
  if (!credentials.ok()) {
    spdlog::error("{}", credentials.status().ToString());
    return 1;
  }

  const uint64_t max_codec_state_bytes =
      absl::GetFlag(FLAGS_max_codec_state_bytes);
  if (max_codec_state_bytes == 0 ||
      max_codec_state_bytes > kMaxCodecStateBytes) {
    spdlog::error("--max_codec_state_bytes must be in [1, {}]",
                  kMaxCodecStateBytes);
    return 1;
  }
  StreamLimiter streams(
      {.idle_timeout =
           absl::Seconds(absl::GetFlag(FLAGS_stream_idle_timeout_s)),
       .max_streams_per_tenant = absl::GetFlag(FLAGS_max_streams_per_tenant)});
  KvCacheService service(&engine, &tenants, &streams, max_codec_state_bytes);
  auto regions = RegionPlane::StartFromFlags(listen, &tenants);
  if (!regions.ok()) {
    spdlog::error("{}", regions.status().ToString());
    return 1;
  }
  if (*regions != nullptr) {
    service.set_regions((*regions)->registry());
    spdlog::info("region socket (same-host shared memory) on {}",
                 (*regions)->path());
  }
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int grpc_port = 0;
  builder.AddListeningPort(listen, *credentials, &grpc_port);
  builder.RegisterService(&service);
  // v1 beside the plugin's v1alpha; it forwards there once the server runs.
  ReflectionV1Service reflection_v1;
  builder.RegisterService(&reflection_v1);
  RpcMetrics rpc_metrics;
  {
    std::vector<
        std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>>
        interceptors;
    interceptors.push_back(RpcMetrics::InterceptorFactory(&rpc_metrics));
    builder.experimental().SetInterceptorCreators(std::move(interceptors));
  }
  ApplyTransportArguments(builder);
  // gRPC sets SO_REUSEPORT by default: a second server on this port would
  // start, and the kernel would split the clients between two stores.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  grpc::ResourceQuota quota("seqkv-server");
  quota.SetMaxThreads(static_cast<int>(absl::GetFlag(FLAGS_max_threads)));
  builder.SetResourceQuota(quota);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || (grpc_port == 0 && !absl::StartsWith(listen, "unix:"))) {
    spdlog::error("cannot listen on {} (in use by another process?)", listen);
    return 1;
  }
  reflection_v1.SetChannel(server->InProcessChannel(grpc::ChannelArguments()));

  // Health checking answers for the service by name as well as for the
  // server as a whole ("").
  server->GetHealthCheckService()->SetServingStatus(
      v1::KvCacheService::service_full_name(), true);

  AdminServerOptions admin_options = AdminServerOptionsFromFlags();
  admin_options.rpc_metrics = &rpc_metrics;
  admin_options.streams = &streams;
  if (*regions != nullptr) admin_options.regions = (*regions)->registry();
  (*cluster)->AddAdminRoutes(admin_options);
  AdminServer admin(&engine, admin_options);
  const std::string admin_listen = absl::GetFlag(FLAGS_admin_listen);
  if (!admin_listen.empty()) {
    if (auto status = admin.Start(admin_listen, config.admin_token_sha256);
        !status.ok()) {
      spdlog::error("{}", status.ToString());
      server->Shutdown();
      return 1;
    }
  }
  const std::string probe_listen = absl::GetFlag(FLAGS_probe_listen);
  if (!probe_listen.empty()) {
    if (auto status = admin.StartProbes(probe_listen); !status.ok()) {
      spdlog::error("{}", status.ToString());
      server->Shutdown();
      return 1;
    }
  }
  admin.SetReady(true);
  if (auto status = (*cluster)->Start(&engine, data_dir, grpc_port,
                                      admin.port(), config.capacity_bytes);
      !status.ok()) {
    spdlog::error("{}", status.ToString());
    server->Shutdown();
    return 1;
  }
  spdlog::info(
      "seqkv-server serving gRPC on {} (port {}), admin on {} (port {}), data "
      "in {}",
      listen, grpc_port, admin_listen, admin.port(), data_dir);
  if (const std::string ready = absl::GetFlag(FLAGS_ready_file);
      !ready.empty()) {
    std::ofstream(ready + ".tmp") << absl::StrCat(
        "{\"grpc_port\":", grpc_port, ",\"admin_port\":", admin.port(),
        ",\"probe_port\":", admin.probe_port(), "}\n");
    std::filesystem::rename(ready + ".tmp", ready, error);
  }

  // Wait for SIGTERM or SIGINT (blocked in main before any thread started);
  // SIGHUP reloads the tenants and limits from the config file.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  int received = 0;
  while (sigwait(&signals, &received) == 0 && received == SIGHUP) {
    if (config_path.empty()) continue;
    auto reloaded = LoadConfig(config_path);
    if (!reloaded.ok()) {
      spdlog::error("reload failed, keeping the old config: {}",
                    reloaded.status().ToString());
      continue;
    }
    if (absl::GetFlag(FLAGS_capacity_bytes) > 0)
      reloaded->capacity_bytes = absl::GetFlag(FLAGS_capacity_bytes);
    std::shared_ptr<const TenantDirectory> fresh =
        TenantDirectory::FromConfig(*reloaded);
    engine.SetLimits(fresh->Limits(), reloaded->capacity_bytes);
    tenants.Replace(fresh);
    spdlog::info("reloaded {}: {} tenants", config_path,
                 reloaded->tenants.size());
  }
  spdlog::info("signal {}: draining calls", received);
  // In a cluster: draining in etcd for --drain_s while serving, then leave.
  (*cluster)->Stop();
  admin.SetReady(false);
  // Health checks answer NOT_SERVING while the calls in flight finish.
  server->GetHealthCheckService()->Shutdown();
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(10));
  admin.Stop();
  if (auto status = engine.stats().Save(); !status.ok())
    spdlog::warn("saving counters: {}", status.ToString());
  spdlog::info("stopped");
  return 0;
}

}  // namespace
}  // namespace seqkv

int main(int argc, char** argv) {
  // Block the stop and reload signals in every thread; Serve() waits for
  // them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  absl::SetProgramUsageMessage(
      "seqkv-server --data_dir DIR --listen ADDR --admin_listen ADDR "
      "[--config FILE]");
  // absl's --help lists only the flags of a file named after the program
  // (there is none) and exits 1: list the server's flags and exit 0.
  for (int i = 1; i < argc && absl::string_view(argv[i]) != "--"; ++i) {
    const absl::string_view arg = argv[i];
    if (arg == "--help" || arg == "-help" || arg == "--helpshort" ||
        arg == "-helpshort" || arg == "-h") {
      absl::flags_internal::SetProgramInvocationName(argv[0]);
      absl::flags_internal::FlagsHelp(
          std::cout, "/server/",
          absl::flags_internal::HelpFormat::kHumanReadable,
          absl::ProgramUsageMessage());
      return 0;
    }
  }
  absl::ParseCommandLine(argc, argv);
  return seqkv::Serve();
}
