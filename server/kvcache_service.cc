#include "server/kvcache_service.h"

#include "proto/grpc_transport.h"
#include "spdlog/spdlog.h"

namespace seqkv {
namespace {

grpc::Status ToGrpc(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()),
                      std::string(status.message()));
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
  auto outcome = engine_->Lookup(*scope, *request);
  if (!outcome.ok()) return ToGrpc(outcome.status());
  response->set_matched_tokens(outcome->matched_tokens);
  response->set_namespace_(outcome->name_space);
  return grpc::Status::OK;
}

grpc::Status KvCacheService::Put(grpc::ServerContext* context,
                                 grpc::ServerReader<v1::PutRequest>* reader,
                                 v1::PutResponse* response) {
  const auto tenants = tenants_->get();
  auto caller = tenants->Authenticate(*context);
  if (!caller.ok()) return ToGrpc(caller.status());
  v1::PutRequest request;
  if (!reader->Read(&request))
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        "Put stream carried no header");
  if (!request.has_header())
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        "the first Put message must be a header");
  auto name_space =
      tenants->WriteNamespaceFor(*caller, request.header().namespace_());
  if (!name_space.ok()) return ToGrpc(name_space.status());
  auto session = engine_->BeginPut(*name_space, request.header());
  if (!session.ok()) return ToGrpc(session.status());
  while (reader->Read(&request)) {
    if (request.has_header())
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          "a Put stream carries exactly one header");
    if (auto status = (*session)->Append(request.data()); !status.ok())
      return ToGrpc(status);
  }
  if (context->IsCancelled())
    return grpc::Status(grpc::StatusCode::CANCELLED,
                        "client cancelled the Put; nothing was stored");
  auto result = (*session)->Finish();
  if (!result.ok()) return ToGrpc(result.status());
  *response = std::move(*result);
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
  v1::GetResponse message;
  auto status = engine_->Get(
      *scope, *request, kStreamMessageBytes,
      [&](const v1::GetHeader& header) {
        *message.mutable_header() = header;
        return writer->Write(message);
      },
      [&](std::string& data) {
        // Lent to the message, not copied, and handed back for reuse.
        message.mutable_data()->swap(data);
        const bool sent = writer->Write(message);
        message.mutable_data()->swap(data);
        return sent;
      });
  return ToGrpc(status);
}

grpc::Status KvCacheService::Delete(grpc::ServerContext* context,
                                    const v1::DeleteRequest* request,
                                    v1::DeleteResponse* response) {
  const auto tenants = tenants_->get();
  auto caller = tenants->Authenticate(*context);
  if (!caller.ok()) return ToGrpc(caller.status());
  auto name_space = tenants->WriteNamespaceFor(*caller, request->namespace_());
  if (!name_space.ok()) return ToGrpc(name_space.status());
  auto result = engine_->Delete(*name_space, *request);
  if (!result.ok()) return ToGrpc(result.status());
  *response = std::move(*result);
  return grpc::Status::OK;
}

grpc::Status KvCacheService::RegisterModel(
    grpc::ServerContext* context, const v1::RegisterModelRequest* request,
    v1::RegisterModelResponse* response) {
  const auto tenants = tenants_->get();
  auto caller = tenants->Authenticate(*context);
  if (!caller.ok()) return ToGrpc(caller.status());
  auto result = engine_->RegisterModel(*request);
  if (!result.ok()) return ToGrpc(result.status());
  spdlog::info("model '{}' {} (chunk_tokens {})", request->model(),
               result->created() ? "registered" : "updated",
               result->chunk_tokens());
  *response = std::move(*result);
  return grpc::Status::OK;
}

grpc::Status KvCacheService::GetModel(grpc::ServerContext* context,
                                      const v1::GetModelRequest* request,
                                      v1::GetModelResponse* response) {
  const auto tenants = tenants_->get();
  auto caller = tenants->Authenticate(*context);
  if (!caller.ok()) return ToGrpc(caller.status());
  auto result = engine_->GetModel(request->model());
  if (!result.ok()) return ToGrpc(result.status());
  *response = std::move(*result);
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
  response->set_usage_bytes(static_cast<uint64_t>(stats.usage.bytes_stored));
  response->set_quota_bytes(engine_->QuotaFor(caller->tenant));
  return grpc::Status::OK;
}

}  // namespace seqkv
