#include "client/client.h"

#include <grpcpp/grpcpp.h>

#include <bit>
#include <chrono>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/base/internal/endian.h"
#include "absl/strings/str_cat.h"
#include "client/cluster_client.h"
#include "client/get_stream.h"
#include "client/region_pool.h"
#include "cluster/member.h"
#include "proto/chunk_digest.h"
#include "proto/grpc_transport.h"
#include "proto/layout_convert.h"
#include "seqkv/v1/kvcache.grpc.pb.h"

namespace seqkv {
namespace {

// Token ids as the requests' packed_tokens: little-endian int32s.
std::string PackTokens(std::span<const int32_t> tokens) {
  std::string packed(tokens.size() * sizeof(int32_t), '\0');
  if constexpr (std::endian::native == std::endian::little) {
    std::memcpy(packed.data(), tokens.data(), packed.size());
  } else {
    for (size_t i = 0; i < tokens.size(); ++i)
      absl::little_endian::Store32(packed.data() + i * sizeof(int32_t),
                                   static_cast<uint32_t>(tokens[i]));
  }
  return packed;
}

absl::Status FromGrpc(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                      status.error_message());
}

absl::StatusOr<std::string> ReadTextFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> MakeCredentials(
    const ClientOptions& options) {
  if (options.tls_root_cert_file.empty()) {
    if (!options.tls_cert_file.empty())
      return absl::InvalidArgumentError(
          "a client certificate needs a root certificate (--tls_ca)");
    return grpc::InsecureChannelCredentials();
  }
  grpc::SslCredentialsOptions ssl;
  auto root = ReadTextFile(options.tls_root_cert_file);
  if (!root.ok()) return root.status();
  ssl.pem_root_certs = *root;
  if (!options.tls_cert_file.empty()) {
    auto cert = ReadTextFile(options.tls_cert_file);
    if (!cert.ok()) return cert.status();
    auto key = ReadTextFile(options.tls_key_file);
    if (!key.ok()) return key.status();
    ssl.pem_cert_chain = *cert;
    ssl.pem_private_key = *key;
  }
  return grpc::SslCredentials(ssl);
}

static_assert(kDefaultMessageBytes == kStreamMessageBytes,
              "the client's default message size is the transport's");

PutResult ToPutResult(const v1::PutResponse& response) {
  PutResult result;
  result.tokens = response.tokens();
  result.chunks_new = response.chunks_new();
  result.chunks_deduped = response.chunks_deduped();
  result.bytes_logical = response.bytes_logical();
  result.bytes_stored = response.bytes_stored();
  result.codec = response.codec();
  result.tokens_new = response.tokens_new();
  result.tokens_deduped = response.tokens_deduped();
  result.tokens_split_deduped = response.tokens_split_deduped();
  result.tokens_cross_prefix = response.tokens_cross_prefix();
  return result;
}

v1::GetRequest ToGetRequest(const GetOptions& options,
                            std::span<const int32_t> tokens) {
  v1::GetRequest request;
  request.set_model(options.model);
  request.set_packed_tokens(PackTokens(tokens));
  request.set_namespace_(options.name_space);
  request.set_begin_token(options.begin_token);
  request.set_end_token(options.end_token);
  request.set_alignment(options.alignment);
  if (options.exact_only) request.set_min_fidelity(v1::FIDELITY_EXACT);
  return request;
}

}  // namespace

class Client::Impl {
 public:
  Impl(const ClientOptions& options, std::shared_ptr<grpc::Channel> channel)
      : options_(options), stub_(v1::KvCacheService::NewStub(channel)) {}

  void Prepare(grpc::ClientContext& context) const {
    if (!options_.api_key.empty())
      context.AddMetadata("authorization",
                          absl::StrCat("Bearer ", options_.api_key));
    if (options_.timeout_s > 0)
      context.set_deadline(std::chrono::system_clock::now() +
                           std::chrono::milliseconds(static_cast<int64_t>(
                               options_.timeout_s * 1000)));
  }

  // A Put whose data is `length` bytes at `offset` of region `handle`.
  absl::StatusOr<PutResult> PutRegion(const PutOptions& options,
                                      const KvLayout& layout,
                                      std::span<const int32_t> tokens,
                                      const std::string& handle,
                                      uint64_t offset, uint64_t length) {
    grpc::ClientContext context;
    Prepare(context);
    v1::PutResponse response;
    auto writer = stub_->Put(&context, &response);
    v1::PutRequest request;
    v1::PutHeader* header = request.mutable_header();
    header->set_model(options.model);
    *header->mutable_layout() = LayoutToProto(layout);
    header->set_packed_tokens(PackTokens(tokens));
    header->set_codec(options.codec);
    header->set_namespace_(options.name_space);
    if (writer->Write(request)) {
      v1::RegionSlice* slice = request.mutable_region_data();
      slice->set_region(handle);
      slice->set_offset(offset);
      slice->set_length(length);
      writer->Write(request);
    }
    writer->WritesDone();
    if (auto status = FromGrpc(writer->Finish()); !status.ok()) return status;
    return ToPutResult(response);
  }

  // A Get whose data the server writes at `offset` of region `handle`.
  absl::StatusOr<RegionGetResult> GetRegion(v1::GetRequest request,
                                            const std::string& handle,
                                            uint64_t offset,
                                            uint64_t capacity) {
    v1::RegionSlice* slice = request.mutable_region_target();
    slice->set_region(handle);
    slice->set_offset(offset);
    slice->set_length(capacity);
    grpc::ClientContext context;
    Prepare(context);
    auto reader = stub_->Get(&context, request);
    v1::GetResponse message;
    bool have_header = false;
    v1::GetHeader header;
    while (reader->Read(&message)) {
      if (!message.has_header() || have_header ||
          !message.header().data_in_region())
        return absl::DataLossError(
            "a Get into a region answered with more than one header");
      header = message.header();
      have_header = true;
    }
    if (auto status = FromGrpc(reader->Finish()); !status.ok()) return status;
    if (!have_header)
      return absl::DataLossError("a Get into a region ended without a header");
    auto layout = LayoutFromProto(header.layout());
    if (!layout.ok())
      return absl::DataLossError(absl::StrCat("server sent a bad layout: ",
                                              layout.status().message()));
    if (header.end_token() < header.begin_token() ||
        header.data_bytes() !=
            uint64_t{header.end_token() - header.begin_token()} *
                layout->bytes_per_token() ||
        header.data_bytes() > capacity)
      return absl::DataLossError("server announced a bad data size");
    return RegionGetResult{.layout = *layout,
                           .matched_tokens = header.matched_tokens(),
                           .begin_token = header.begin_token(),
                           .end_token = header.end_token(),
                           .data_bytes = header.data_bytes(),
                           .name_space = header.namespace_()};
  }

  // Bytes per token of a model's layout, asked once per model.
  absl::StatusOr<size_t> TokenBytes(Client& client, const std::string& model) {
    {
      absl::MutexLock lock(&mutex_);
      if (auto it = token_bytes_.find(model); it != token_bytes_.end())
        return it->second;
    }
    auto registration = client.GetModel(model);
    if (!registration.ok()) return registration.status();
    const size_t bytes = registration->layout.bytes_per_token();
    absl::MutexLock lock(&mutex_);
    token_bytes_[model] = bytes;
    return bytes;
  }

  const ClientOptions options_;
  std::unique_ptr<v1::KvCacheService::Stub> stub_;
  std::unique_ptr<RegionPool> regions_;  // with a shm_socket
  absl::Mutex mutex_;
  std::map<std::string, size_t> token_bytes_ ABSL_GUARDED_BY(mutex_);
};

absl::StatusOr<std::unique_ptr<Client>> Client::Connect(
    const ClientOptions& options) {
  if (options.server.empty())
    return absl::InvalidArgumentError("server address is empty");
  if (cluster::IsClusterTarget(options.server)) {
    auto cluster = ClusterClient::Connect(options);
    if (!cluster.ok()) return cluster.status();
    std::unique_ptr<Client> client(new Client(nullptr));
    client->cluster_ = std::move(*cluster);
    return client;
  }
  auto credentials = MakeCredentials(options);
  if (!credentials.ok()) return credentials.status();
  auto channel = grpc::CreateCustomChannel(options.server, *credentials,
                                           TransportChannelArguments());
  auto impl = std::make_unique<Impl>(options, std::move(channel));
  if (!options.shm_socket.empty()) {
    auto connection = transport::RegionConnection::Connect(
        options.shm_socket, options.api_key.empty()
                                ? ""
                                : absl::StrCat("Bearer ", options.api_key));
    if (!connection.ok()) return connection.status();
    impl->regions_ = std::make_unique<RegionPool>(*std::move(connection));
  }
  return std::unique_ptr<Client>(new Client(std::move(impl)));
}

Client::Client(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Client::~Client() = default;

absl::StatusOr<LookupResult> Client::Lookup(const std::string& model,
                                            std::span<const int32_t> tokens,
                                            uint32_t alignment,
                                            const std::string& name_space,
                                            uint32_t head_chunks) {
  if (cluster_)
    return cluster_->Lookup(model, tokens, alignment, name_space, 0);
  v1::LookupRequest request;
  request.set_model(model);
  request.set_packed_tokens(PackTokens(tokens));
  request.set_alignment(alignment);
  request.set_namespace_(name_space);
  request.set_head_chunks(head_chunks);
  return SendLookup(request);
}

absl::StatusOr<LookupResult> Client::LookupByChunks(
    const std::string& model, std::span<const int32_t> tokens,
    uint32_t chunk_tokens, uint32_t alignment, const std::string& name_space,
    uint32_t head_chunks) {
  if (cluster_ && chunk_tokens > 0)
    return cluster_->Lookup(model, tokens, alignment, name_space, chunk_tokens);
  if (chunk_tokens == 0)
    return absl::InvalidArgumentError("chunk_tokens must be positive");
  v1::LookupRequest request;
  request.set_model(model);
  request.set_chunk_digests(PackChunkDigests(tokens, chunk_tokens));
  request.set_packed_tokens(
      PackTokens(tokens.subspan(tokens.size() / chunk_tokens * chunk_tokens)));
  request.set_alignment(alignment);
  request.set_namespace_(name_space);
  request.set_head_chunks(head_chunks);
  return SendLookup(request);
}

absl::StatusOr<LookupResult> Client::SendLookup(
    const v1::LookupRequest& request) {
  v1::LookupResponse response;
  grpc::ClientContext context;
  impl_->Prepare(context);
  if (auto status =
          FromGrpc(impl_->stub_->Lookup(&context, request, &response));
      !status.ok())
    return status;
  return LookupResult{response.matched_tokens(), response.namespace_(),
                      response.probability(), response.matched_tokens_exact(),
                      response.head_probability()};
}

absl::StatusOr<PutResult> Client::Put(const PutOptions& options,
                                      const KvCache& cache) {
  if (cluster_) return cluster_->Put(options, cache);
  if (auto status = cache.Validate(); !status.ok()) return status;
  const size_t bytes =
      size_t{cache.num_tokens()} * cache.layout.bytes_per_token();
  if (impl_->regions_ && bytes > 0) {
    // Converted straight into shared memory; without a region (the
    // tenant's limit, say) the bytes go in messages below.
    if (auto region = impl_->regions_->Acquire(bytes); region.ok()) {
      cache.CopyTokenMajor(0, cache.num_tokens(),
                           (*region)->bytes().first(bytes));
      auto result = impl_->PutRegion(options, cache.layout, cache.tokens,
                                     (*region)->handle(), 0, bytes);
      impl_->regions_->Release(*std::move(region));
      return result;
    }
  }
  grpc::ClientContext context;
  impl_->Prepare(context);
  v1::PutResponse response;
  auto writer = impl_->stub_->Put(&context, &response);
  v1::PutRequest request;
  v1::PutHeader* header = request.mutable_header();
  header->set_model(options.model);
  *header->mutable_layout() = LayoutToProto(cache.layout);
  header->set_packed_tokens(PackTokens(cache.tokens));
  header->set_codec(options.codec);
  header->set_namespace_(options.name_space);
  bool open = writer->Write(request);
  // Convert a batch of tokens at a time; send it in slices under the
  // message budget (a single token may exceed it on very large layouts).
  const size_t budget = impl_->options_.message_bytes;
  const uint32_t tokens_per_batch = static_cast<uint32_t>(
      std::max<size_t>(1, budget / cache.layout.bytes_per_token()));
  std::string batch;
  for (uint32_t begin = 0; open && begin < cache.num_tokens();
       begin += tokens_per_batch) {
    const uint32_t end = std::min(cache.num_tokens(), begin + tokens_per_batch);
    if (size_t{end - begin} * cache.layout.bytes_per_token() <= budget) {
      // The batch fits one message: convert straight into it, one copy
      // fewer than slicing a separate buffer.
      request.Clear();
      cache.AppendTokenMajor(begin, end, *request.mutable_data());
      open = writer->Write(request);
      continue;
    }
    batch.clear();
    cache.AppendTokenMajor(begin, end, batch);
    for (size_t offset = 0; open && offset < batch.size(); offset += budget) {
      request.Clear();
      request.set_data(batch.substr(offset, budget));
      open = writer->Write(request);
    }
  }
  writer->WritesDone();
  if (auto status = FromGrpc(writer->Finish()); !status.ok()) return status;
  return ToPutResult(response);
}

absl::StatusOr<KvCache> Client::Get(const GetOptions& options,
                                    std::span<const int32_t> tokens) {
  KvCache cache;
  if (auto status = GetInto(options, tokens, cache); !status.ok())
    return status;
  return cache;
}

absl::Status Client::GetInto(const GetOptions& options,
                             std::span<const int32_t> tokens, KvCache& cache) {
  if (cluster_) return cluster_->GetInto(options, tokens, cache);
  v1::GetRequest request = ToGetRequest(options, tokens);
  if (impl_->regions_ && !tokens.empty()) {
    auto token_bytes = impl_->TokenBytes(*this, options.model);
    if (!token_bytes.ok()) return token_bytes.status();
    const size_t capacity = tokens.size() * *token_bytes;
    // Sized by the prompt, not the match: past max_scratch_bytes, or
    // without a region, the data comes in messages below.
    auto region = capacity <= impl_->options_.max_scratch_bytes
                      ? impl_->regions_->Acquire(capacity)
                      : absl::StatusOr<std::shared_ptr<SharedRegion>>(
                            absl::OutOfRangeError("over max_scratch_bytes"));
    if (region.ok()) {
      auto placed = impl_->GetRegion(request, (*region)->handle(), 0, capacity);
      if (placed.ok()) {
        cache.layout = placed->layout;
        cache.tokens.assign(tokens.begin() + placed->begin_token,
                            tokens.begin() + placed->end_token);
        cache.ResizeTensors();
        cache.ScatterTokenMajor(0,
                                (*region)->bytes().first(placed->data_bytes));
      }
      impl_->regions_->Release(*std::move(region));
      return placed.status();
    }
  }
  grpc::ClientContext context;
  impl_->Prepare(context);
  auto reader = impl_->stub_->Get(&context, request);
  GetStreamAssembler assembler(tokens, cache);
  v1::GetResponse message;
  while (reader->Read(&message)) {
    if (auto status = assembler.Add(message); !status.ok()) return status;
  }
  if (auto status = FromGrpc(reader->Finish()); !status.ok()) return status;
  return assembler.Finish();
}

absl::StatusOr<DeleteResult> Client::Delete(const std::string& model,
                                            std::span<const int32_t> tokens,
                                            const std::string& name_space) {
  if (cluster_) return cluster_->Delete(model, tokens, name_space);
  v1::DeleteRequest request;
  request.set_model(model);
  request.set_packed_tokens(PackTokens(tokens));
  request.set_namespace_(name_space);
  v1::DeleteResponse response;
  grpc::ClientContext context;
  impl_->Prepare(context);
  if (auto status =
          FromGrpc(impl_->stub_->Delete(&context, request, &response));
      !status.ok())
    return status;
  return DeleteResult{response.chunks_deleted(), response.bytes_freed()};
}

absl::StatusOr<bool> Client::RegisterModel(
    const ModelRegistration& registration) {
  if (cluster_) return cluster_->RegisterModel(registration);
  v1::RegisterModelRequest request;
  request.set_model(registration.model);
  *request.mutable_layout() = LayoutToProto(registration.layout);
  request.set_chunk_tokens(registration.chunk_tokens);
  request.set_default_codec(registration.default_codec);
  size_t state_bytes = 0;
  for (const auto& [key, blob] : registration.codec_state)
    state_bytes += blob.size();
  const size_t budget = std::max<size_t>(1, impl_->options_.message_bytes);
  grpc::ClientContext context;
  impl_->Prepare(context);
  if (state_bytes <= budget) {
    for (const auto& [key, blob] : registration.codec_state)
      (*request.mutable_codec_state())[key] = blob;
    v1::RegisterModelResponse response;
    if (auto status =
            FromGrpc(impl_->stub_->RegisterModel(&context, request, &response));
        !status.ok())
      return status;
    return response.created();
  }
  // Too large for one message (a server takes at most 256 MiB): the state
  // follows the registration in pieces of the message budget.
  v1::RegisterModelStreamResponse response;
  auto writer = impl_->stub_->RegisterModelStream(&context, &response);
  v1::RegisterModelStreamRequest message;
  request.set_codec_state_bytes(state_bytes);
  *message.mutable_registration() = std::move(request);
  bool open = writer->Write(message);
  for (const auto& [key, blob] : registration.codec_state) {
    size_t offset = 0;
    do {  // an empty entry still sends its key
      v1::CodecStatePiece* piece = message.mutable_codec_state_piece();
      piece->set_key(key);
      piece->set_data(blob.substr(offset, budget));
      open = open && writer->Write(message);
      offset += budget;
    } while (open && offset < blob.size());
  }
  writer->WritesDone();
  if (auto status = FromGrpc(writer->Finish()); !status.ok()) return status;
  return response.registration().created();
}

absl::StatusOr<ModelRegistration> Client::GetModel(const std::string& model) {
  if (cluster_) return cluster_->GetModel(model);
  v1::GetModelRequest request;
  request.set_model(model);
  v1::GetModelResponse response;
  grpc::ClientContext context;
  impl_->Prepare(context);
  if (auto status =
          FromGrpc(impl_->stub_->GetModel(&context, request, &response));
      !status.ok())
    return status;
  ModelRegistration registration;
  registration.model = response.model();
  auto layout = LayoutFromProto(response.layout());
  if (!layout.ok()) return layout.status();
  registration.layout = *layout;
  registration.chunk_tokens = response.chunk_tokens();
  registration.default_codec = response.default_codec();
  for (const std::string& key : response.codec_state_keys())
    registration.codec_state[key] = "";
  return registration;
}

bool Client::uses_shared_memory() const {
  return impl_ != nullptr && impl_->regions_ != nullptr;
}

absl::StatusOr<std::shared_ptr<SharedRegion>> Client::CreateRegion(
    size_t bytes) {
  if (!uses_shared_memory())
    return absl::FailedPreconditionError(
        "this client has no region socket (ClientOptions::shm_socket)");
  return impl_->regions_->connection().CreateRegion(bytes);
}

absl::Status Client::UnregisterRegion(const SharedRegion& region) {
  if (!uses_shared_memory())
    return absl::FailedPreconditionError(
        "this client has no region socket (ClientOptions::shm_socket)");
  return impl_->regions_->connection().Unregister(region);
}

absl::StatusOr<PutResult> Client::PutFromRegion(const PutOptions& options,
                                                const KvLayout& layout,
                                                std::span<const int32_t> tokens,
                                                const SharedRegion& region,
                                                uint64_t offset) {
  if (!uses_shared_memory())
    return absl::FailedPreconditionError(
        "this client has no region socket (ClientOptions::shm_socket)");
  const uint64_t length = uint64_t{tokens.size()} * layout.bytes_per_token();
  if (offset > region.size() || length > region.size() - offset)
    return absl::OutOfRangeError(
        absl::StrCat("the Put's ", length, " bytes at offset ", offset,
                     " are outside the region's ", region.size()));
  return impl_->PutRegion(options, layout, tokens, region.handle(), offset,
                          length);
}

absl::StatusOr<RegionGetResult> Client::GetIntoRegion(
    const GetOptions& options, std::span<const int32_t> tokens,
    const SharedRegion& region, uint64_t offset, uint64_t capacity) {
  if (!uses_shared_memory())
    return absl::FailedPreconditionError(
        "this client has no region socket (ClientOptions::shm_socket)");
  return impl_->GetRegion(ToGetRequest(options, tokens), region.handle(),
                          offset, capacity);
}

}  // namespace seqkv
