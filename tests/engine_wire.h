// Calls a CacheEngine with seqkv.v1 messages, converted as the gRPC service
// converts them (server/wire_convert.h), for tests and fuzz targets that
// drive the engine without a server.
#ifndef SEQKV_TESTS_ENGINE_WIRE_H_
#define SEQKV_TESTS_ENGINE_WIRE_H_

#include <functional>
#include <memory>
#include <string>
#include <utility>

#include "server/cache_engine.h"
#include "server/wire_convert.h"

namespace seqkv::testing {

// The models engine tests use: those of one tenant, "default", whatever
// namespace they read or write.
inline ModelScope WireModels() {
  return ModelScope{.tenant = "default", .may_change_unowned = true};
}

inline ReadScope WithWireModels(ReadScope scope) {
  if (scope.models.tenant.empty()) scope.models = WireModels();
  return scope;
}

inline absl::StatusOr<LookupOutcome> WireLookup(
    CacheEngine& engine, const ReadScope& scope,
    const v1::LookupRequest& request) {
  DecodedIds ids;
  auto query = ToLookupQuery(request, engine.options().max_tokens, ids);
  if (!query.ok()) return query.status();
  return engine.Lookup(WithWireModels(scope), *query);
}

inline absl::StatusOr<std::unique_ptr<PutSession>> WireBeginPut(
    CacheEngine& engine, const std::string& name_space,
    const v1::PutHeader& header) {
  auto spec = ToPutSpec(header, engine.options().max_tokens);
  if (!spec.ok()) return spec.status();
  return engine.BeginPut(name_space, WireModels(), *std::move(spec));
}

inline absl::StatusOr<v1::PutResponse> WireFinishPut(CacheEngine& engine,
                                                     PutSession& session) {
  auto summary = engine.FinishPut(session);
  if (!summary.ok()) return summary.status();
  return ToPutResponse(*summary);
}

inline absl::Status WireGet(
    CacheEngine& engine, const ReadScope& scope, const v1::GetRequest& request,
    size_t message_bytes,
    const std::function<bool(const v1::GetHeader&)>& on_header,
    const std::function<bool(std::string&)>& on_data) {
  DecodedIds ids;
  auto query = ToGetQuery(request, engine.options().max_tokens, ids);
  if (!query.ok()) return query.status();
  return engine.Get(
      WithWireModels(scope), *query, message_bytes,
      [&](const GetPlan& plan) { return on_header(ToGetHeader(plan)); },
      on_data);
}

inline absl::StatusOr<DeleteSummary> WireDelete(
    CacheEngine& engine, const std::string& name_space,
    const v1::DeleteRequest& request) {
  DecodedIds ids;
  auto tokens = ToDeleteTokens(request, engine.options().max_tokens, ids);
  if (!tokens.ok()) return tokens.status();
  return engine.Delete(name_space, WireModels(), request.model(), *tokens);
}

inline absl::StatusOr<RegisterOutcome> WireRegisterModel(
    CacheEngine& engine, v1::RegisterModelRequest request) {
  auto spec = ToModelSpec(request);
  if (!spec.ok()) return spec.status();
  return engine.RegisterModel(WireModels(), *std::move(spec));
}

}  // namespace seqkv::testing

#endif  // SEQKV_TESTS_ENGINE_WIRE_H_
