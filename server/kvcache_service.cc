#include "server/kvcache_service.h"

#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "proto/grpc_transport.h"
#include "server/request_text.h"
#include "server/wire_convert.h"
#include "spdlog/spdlog.h"
#include "transport/region_slice.h"

namespace seqkv {
namespace {

grpc::Status ToGrpc(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()),
                      BoundedStatusMessage(status.message()));
}

// Why a stream's first Read failed: gRPC's typed reader says only false,
// both for a stream that ended at once and for a first message that did
// not parse, which in practice is a string field that is not UTF-8.
grpc::Status NoFirstMessage(absl::string_view rpc, absl::string_view what,
                            absl::string_view string_fields) {
  return grpc::Status(
      grpc::StatusCode::INVALID_ARGUMENT,
      absl::StrCat(rpc, " stream carried no ", what,
                   ": it ended first, or its first message did not parse (",
                   string_fields,
                   " are proto3 strings and must be valid UTF-8)"));
}

uint64_t CodecStateBytes(const v1::RegisterModelRequest& request) {
  uint64_t bytes = 0;
  for (const auto& [key, blob] : request.codec_state()) bytes += blob.size();
  return bytes;
}

// A Read or Write that counts toward the stream's idle timeout.
template <typename Reader, typename Message>
bool ReadFromClient(OpenStream& stream, Reader& reader, Message& message) {
  stream.BeginWait();
  const bool read = reader.Read(&message);
  stream.EndWait();
  return read;
}

template <typename Writer, typename Message>
bool WriteToClient(OpenStream& stream, Writer& writer, const Message& message) {
  stream.BeginWait();
  const bool written = writer.Write(message);
  stream.EndWait();
  return written;
}

}  // namespace

grpc::Status KvCacheService::Lookup(grpc::ServerContext* context,
                                    const v1::LookupRequest* request,
                                    v1::LookupResponse* response) {
  const auto tenants = tenants_->get();
  auto caller = tenants->Authenticate(*context);
  if (!caller.ok()) return ToGrpc(caller.status());
  auto scope = tenants->ReadScopeFor(*caller, request->namespace_());
  if (!scope.ok()) return ToGrpc(scope.status());
  DecodedIds ids;
  auto query = ToLookupQuery(*request, engine_->options().max_tokens, ids);
  if (!query.ok()) return ToGrpc(query.status());
  auto outcome = engine_->Lookup(*scope, *query);
  if (!outcome.ok()) return ToGrpc(outcome.status());
  response->set_matched_tokens(outcome->matched_tokens);
  response->set_namespace_(outcome->name_space);
  response->set_probability(outcome->probability);
  response->set_matched_tokens_exact(outcome->matched_tokens_exact);
  response->set_head_probability(outcome->head_probability);
  return grpc::Status::OK;
}

grpc::Status KvCacheService::Put(grpc::ServerContext* context,
                                 grpc::ServerReader<v1::PutRequest>* reader,
                                 v1::PutResponse* response) {
  const auto tenants = tenants_->get();
  auto caller = tenants->Authenticate(*context);
  if (!caller.ok()) return ToGrpc(caller.status());
  auto stream = streams_->Open(context, caller->tenant);
  if (!stream.ok()) return ToGrpc(stream.status());
  v1::PutRequest request;
  if (!ReadFromClient(**stream, *reader, request)) {
    if ((*stream)->timed_out())
      return ToGrpc((*stream)->TimeoutError("the Put header"));
    return NoFirstMessage("Put", "header",
                          "header.model, header.namespace and header.codec");
  }
  if (!request.has_header())
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        "the first Put message must be a header");
  auto name_space =
      tenants->WriteNamespaceFor(*caller, request.header().namespace_());
  if (!name_space.ok()) return ToGrpc(name_space.status());
  auto spec = ToPutSpec(request.header(), engine_->options().max_tokens);
  if (!spec.ok()) return ToGrpc(spec.status());
  auto session = engine_->BeginPut(*name_space, tenants->ModelScopeFor(*caller),
                                   *std::move(spec));
  if (!session.ok()) return ToGrpc(session.status());
  uint64_t region_bytes = 0;  // read from regions, for the shm metrics
  bool from_region = false;
  while (ReadFromClient(**stream, *reader, request)) {
    if (request.has_header())
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          "a Put stream carries exactly one header");
    if (request.has_region_data()) {
      // Same host: the bytes are read from the caller's region.
      auto view = transport::ResolveSlice(regions_, caller->tenant,
                                          request.region_data(), "region_data");
      if (!view.ok()) return ToGrpc(view.status());
      const std::string_view bytes(reinterpret_cast<char*>(view->bytes.data()),
                                   view->bytes.size());
      if (auto status = (*session)->Append(bytes); !status.ok())
        return ToGrpc(status);
      region_bytes += bytes.size();
      from_region = true;
      continue;
    }
    if (auto status = (*session)->Append(request.data()); !status.ok())
      return ToGrpc(status);
  }
  if ((*stream)->timed_out())
    return ToGrpc(
        (*stream)->TimeoutError("the next Put message; nothing was stored"));
  if (context->IsCancelled())
    return grpc::Status(grpc::StatusCode::CANCELLED,
                        "client cancelled the Put; nothing was stored");
  auto result = engine_->FinishPut(**session);
  if (!result.ok()) return ToGrpc(result.status());
  if (from_region) regions_->metrics().RecordPut(region_bytes);
  *response = ToPutResponse(*result);
  return grpc::Status::OK;
}

grpc::Status KvCacheService::Get(grpc::ServerContext* context,
                                 const v1::GetRequest* request,
                                 grpc::ServerWriter<v1::GetResponse>* writer) {
  const auto tenants = tenants_->get();
  auto caller = tenants->Authenticate(*context);
  if (!caller.ok()) return ToGrpc(caller.status());
  auto scope = tenants->ReadScopeFor(*caller, request->namespace_());
  if (!scope.ok()) return ToGrpc(scope.status());
  DecodedIds ids;
  auto query = ToGetQuery(*request, engine_->options().max_tokens, ids);
  if (!query.ok()) return ToGrpc(query.status());
  auto stream = streams_->Open(context, caller->tenant);
  if (!stream.ok()) return ToGrpc(stream.status());
  if (request->has_region_target())
    return GetIntoRegion(context, *request, *caller, *scope, *query, **stream,
                         *writer);
  v1::GetResponse message;
  auto status = engine_->Get(
      *scope, *query, kStreamMessageBytes,
      [&](const GetPlan& plan) {
        *message.mutable_header() = ToGetHeader(plan);
        return WriteToClient(**stream, *writer, message);
      },
      [&](std::string& data) {
        // Lent to the message, not copied, and handed back for reuse.
        message.mutable_data()->swap(data);
        const bool sent = WriteToClient(**stream, *writer, message);
        message.mutable_data()->swap(data);
        return sent;
      });
  if ((*stream)->timed_out())
    return ToGrpc((*stream)->TimeoutError("the client to read the Get"));
  return ToGrpc(status);
}

grpc::Status KvCacheService::GetIntoRegion(
    grpc::ServerContext* context, const v1::GetRequest& request,
    const Caller& caller, const ReadScope& scope, const GetQuery& query,
    OpenStream& stream, grpc::ServerWriter<v1::GetResponse>& writer) {
  const v1::RegionSlice& slice = request.region_target();
  auto view =
      transport::ResolveSlice(regions_, caller.tenant, slice, "region_target");
  if (!view.ok()) return ToGrpc(view.status());
  v1::GetResponse message;
  transport::RegionMetrics& metrics = regions_->metrics();
  auto status = engine_->GetInto(
      scope, query,
      [&](const GetPlan& plan) -> absl::StatusOr<std::span<std::byte>> {
        if (plan.data_bytes > view->bytes.size()) {
          metrics.RecordError(transport::RegionError::kBounds);
          return absl::OutOfRangeError(
              absl::StrCat("the Get's ", plan.data_bytes,
                           " bytes do not fit the region_target's ",
                           view->bytes.size(), "; nothing was written"));
        }
        *message.mutable_header() = ToGetHeader(plan);
        return view->bytes.first(plan.data_bytes);
      });
  if (!status.ok()) return ToGrpc(status);
  if (view->region->revoked()) {
    metrics.RecordError(transport::RegionError::kGone);
    return grpc::Status(
        grpc::StatusCode::ABORTED,
        absl::StrCat("region_target: region ", view->region->name(),
                     " was unregistered (or its connection closed) during "
                     "the Get"));
  }
  message.mutable_header()->set_data_in_region(true);
  if (!WriteToClient(stream, writer, message)) {
    if (stream.timed_out())
      return ToGrpc(stream.TimeoutError("the client to read the Get"));
    return grpc::Status(grpc::StatusCode::CANCELLED, "client went away");
  }
  metrics.RecordGet(message.header().data_bytes());
  return grpc::Status::OK;
}

grpc::Status KvCacheService::Delete(grpc::ServerContext* context,
                                    const v1::DeleteRequest* request,
                                    v1::DeleteResponse* response) {
  const auto tenants = tenants_->get();
  auto caller = tenants->Authenticate(*context);
  if (!caller.ok()) return ToGrpc(caller.status());
  auto name_space = tenants->WriteNamespaceFor(*caller, request->namespace_());
  if (!name_space.ok()) return ToGrpc(name_space.status());
  DecodedIds ids;
  auto tokens = ToDeleteTokens(*request, engine_->options().max_tokens, ids);
  if (!tokens.ok()) return ToGrpc(tokens.status());
  auto result = engine_->Delete(*name_space, tenants->ModelScopeFor(*caller),
                                request->model(), *tokens);
  if (!result.ok()) return ToGrpc(result.status());
  response->set_chunks_deleted(result->chunks_deleted);
  response->set_bytes_freed(result->bytes_freed);
  return grpc::Status::OK;
}

grpc::Status KvCacheService::RegisterModel(
    grpc::ServerContext* context, const v1::RegisterModelRequest* request,
    v1::RegisterModelResponse* response) {
  const auto tenants = tenants_->get();
  auto caller = tenants->Authenticate(*context);
  if (!caller.ok()) return ToGrpc(caller.status());
  // Register takes a copy (at most the 256 MiB message limit).
  auto memory = engine_->memory_budget().Reserve(
      CodecStateBytes(*request), "the model registration's codec state");
  if (!memory.ok()) return ToGrpc(memory.status());
  return Register(tenants->ModelScopeFor(*caller), *request, *response);
}

grpc::Status KvCacheService::RegisterModelStream(
    grpc::ServerContext* context,
    grpc::ServerReader<v1::RegisterModelStreamRequest>* reader,
    v1::RegisterModelStreamResponse* response) {
  const auto tenants = tenants_->get();
  auto caller = tenants->Authenticate(*context);
  if (!caller.ok()) return ToGrpc(caller.status());
  auto stream = streams_->Open(context, caller->tenant);
  if (!stream.ok()) return ToGrpc(stream.status());
  v1::RegisterModelStreamRequest message;
  if (!ReadFromClient(**stream, *reader, message)) {
    if ((*stream)->timed_out())
      return ToGrpc((*stream)->TimeoutError("the registration"));
    return NoFirstMessage("RegisterModelStream", "registration",
                          "registration.model, registration.default_codec and "
                          "the codec_state keys");
  }
  if (!message.has_registration())
    return grpc::Status(
        grpc::StatusCode::INVALID_ARGUMENT,
        "the first RegisterModelStream message must be the registration");
  v1::RegisterModelRequest request = std::move(*message.mutable_registration());
  uint64_t state_bytes = CodecStateBytes(request);
  // The state is held until registered, and joined once (one piece at a
  // time): it holds about its size of the memory budget.
  auto memory = engine_->memory_budget().Reserve(
      state_bytes, "the model registration's codec state");
  if (!memory.ok()) return ToGrpc(memory.status());
  std::map<std::string, std::vector<std::string>> pieces;
  while (ReadFromClient(**stream, *reader, message)) {
    if (!message.has_codec_state_piece())
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          "after the registration, every RegisterModelStream "
                          "message must be a codec_state_piece");
    v1::CodecStatePiece& piece = *message.mutable_codec_state_piece();
    if (piece.key().empty())
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          "a codec_state_piece needs a key");
    if (auto status = CheckName("a codec_state_piece key", piece.key());
        !status.ok())
      return ToGrpc(status);
    state_bytes += piece.data().size();
    if (state_bytes > max_codec_state_bytes_)
      return CodecStateTooLarge(request.model());
    if (request.codec_state_bytes() != 0 &&
        state_bytes > request.codec_state_bytes())
      return grpc::Status(
          grpc::StatusCode::INVALID_ARGUMENT,
          absl::StrCat("RegisterModelStream carried more codec state than "
                       "the ",
                       request.codec_state_bytes(),
                       " bytes its registration declares; nothing was "
                       "registered"));
    if (auto status = memory->Grow(piece.data().size(),
                                   "the model registration's codec state");
        !status.ok())
      return ToGrpc(status);
    // Kept apart and joined once at the end: appending as they come would
    // copy a large entry about twice over while it grows.
    pieces[piece.key()].push_back(std::move(*piece.mutable_data()));
  }
  if ((*stream)->timed_out())
    return ToGrpc((*stream)->TimeoutError(
        "the next codec_state_piece; nothing was registered"));
  if (context->IsCancelled())
    return grpc::Status(
        grpc::StatusCode::CANCELLED,
        "client cancelled RegisterModelStream; nothing was registered");
  if (request.codec_state_bytes() != 0 &&
      state_bytes != request.codec_state_bytes())
    return grpc::Status(
        grpc::StatusCode::INVALID_ARGUMENT,
        absl::StrCat("RegisterModelStream ended after ", state_bytes,
                     " of the ", request.codec_state_bytes(),
                     " codec state bytes its registration declares (a "
                     "message that did not parse ends a stream early); "
                     "nothing was registered"));
  for (auto& [key, parts] : pieces) {
    std::string& entry = (*request.mutable_codec_state())[key];
    size_t size = entry.size();
    for (const std::string& part : parts) size += part.size();
    entry.reserve(size);
    for (std::string& part : parts) {
      entry.append(part);
      std::string().swap(part);  // free each piece once copied
    }
  }
  return Register(tenants->ModelScopeFor(*caller), std::move(request),
                  *response->mutable_registration());
}

grpc::Status KvCacheService::CodecStateTooLarge(
    const std::string& model) const {
  return grpc::Status(
      grpc::StatusCode::RESOURCE_EXHAUSTED,
      absl::StrCat("the codec state of model ", Quoted(model),
                   " is over --max_codec_state_bytes (", max_codec_state_bytes_,
                   "); nothing was registered"));
}

grpc::Status KvCacheService::Register(const ModelScope& models,
                                      v1::RegisterModelRequest request,
                                      v1::RegisterModelResponse& response) {
  if (CodecStateBytes(request) > max_codec_state_bytes_)
    return CodecStateTooLarge(request.model());
  auto spec = ToModelSpec(request);
  if (!spec.ok()) return ToGrpc(spec.status());
  auto result = engine_->RegisterModel(models, *std::move(spec));
  if (!result.ok()) return ToGrpc(result.status());
  spdlog::info("model '{}' of tenant '{}' {} (chunk_tokens {})",
               request.model(), models.tenant,
               result->created ? "registered" : "updated",
               result->chunk_tokens);
  response.set_model(request.model());
  response.set_chunk_tokens(result->chunk_tokens);
  response.set_created(result->created);
  return grpc::Status::OK;
}

grpc::Status KvCacheService::GetModel(grpc::ServerContext* context,
                                      const v1::GetModelRequest* request,
                                      v1::GetModelResponse* response) {
  const auto tenants = tenants_->get();
  auto caller = tenants->Authenticate(*context);
  if (!caller.ok()) return ToGrpc(caller.status());
  if (auto status = CheckName("model", request->model()); !status.ok())
    return ToGrpc(status);
  auto result =
      engine_->GetModel(tenants->ModelScopeFor(*caller), request->model());
  if (!result.ok()) return ToGrpc(result.status());
  *response = ToGetModelResponse(*result);
  return grpc::Status::OK;
}

grpc::Status KvCacheService::Stats(grpc::ServerContext* context,
                                   const v1::StatsRequest* request,
                                   v1::StatsResponse* response) {
  const auto tenants = tenants_->get();
  auto caller = tenants->Authenticate(*context);
  if (!caller.ok()) return ToGrpc(caller.status());
  const NamespaceStats stats = engine_->stats().Snapshot(caller->tenant);
  response->set_tenant(caller->tenant);
  response->set_lookups(stats.counters.lookups());
  response->set_lookup_tokens(stats.counters.lookup_tokens());
  response->set_hit_tokens(stats.counters.hit_tokens());
  response->set_hit_rate(stats.hit_rate());
  response->set_puts(stats.counters.puts());
  response->set_put_tokens(stats.counters.put_tokens());
  response->set_chunks_stored(static_cast<uint64_t>(stats.usage.chunks_stored));
  response->set_chunks_deduped(stats.counters.chunks_deduped());
  response->set_bytes_logical(static_cast<uint64_t>(stats.usage.bytes_logical));
  response->set_bytes_stored(static_cast<uint64_t>(stats.usage.bytes_stored));
  response->set_evictions(stats.counters.evictions());
  response->set_usage_bytes(
      static_cast<uint64_t>(std::max<int64_t>(0, stats.usage.charged_bytes())));
  response->set_quota_bytes(engine_->QuotaFor(caller->tenant));
  return grpc::Status::OK;
}

}  // namespace seqkv
