// gRPC adapter: turns seqkv.v1 calls into CacheEngine calls.
#ifndef SEQKV_SERVER_KVCACHE_SERVICE_H_
#define SEQKV_SERVER_KVCACHE_SERVICE_H_

#include <grpcpp/grpcpp.h>

#include <cstdint>

#include "seqkv/v1/kvcache.grpc.pb.h"
#include "server/cache_engine.h"
#include "server/stream_limiter.h"
#include "server/tenants.h"
#include "transport/region_registry.h"

namespace seqkv {

// The most codec state one model may register: a model record is one
// protobuf message, which cannot exceed 2 GiB. The 256 MiB message limit
// holds for RegisterModel; RegisterModelStream takes up to this much.
inline constexpr uint64_t kMaxCodecStateBytes = uint64_t{1536} << 20;

class KvCacheService final : public v1::KvCacheService::Service {
 public:
  // All must outlive the service.
  KvCacheService(CacheEngine* engine, const TenantDirectoryHolder* tenants,
                 StreamLimiter* streams,
                 uint64_t max_codec_state_bytes = kMaxCodecStateBytes)
      : engine_(engine),
        tenants_(tenants),
        streams_(streams),
        max_codec_state_bytes_(max_codec_state_bytes) {}

  // Lets Puts and Gets name shared memory regions (RegionSlice) of this
  // registry, which must outlive the service; without one they are
  // refused with FAILED_PRECONDITION. Call before serving.
  void set_regions(const transport::RegionRegistry* regions) {
    regions_ = regions;
  }

  grpc::Status Lookup(grpc::ServerContext* context,
                      const v1::LookupRequest* request,
                      v1::LookupResponse* response) override;
  grpc::Status Put(grpc::ServerContext* context,
                   grpc::ServerReader<v1::PutRequest>* reader,
                   v1::PutResponse* response) override;
  grpc::Status Get(grpc::ServerContext* context, const v1::GetRequest* request,
                   grpc::ServerWriter<v1::GetResponse>* writer) override;
  grpc::Status Delete(grpc::ServerContext* context,
                      const v1::DeleteRequest* request,
                      v1::DeleteResponse* response) override;
  grpc::Status RegisterModel(grpc::ServerContext* context,
                             const v1::RegisterModelRequest* request,
                             v1::RegisterModelResponse* response) override;
  grpc::Status RegisterModelStream(
      grpc::ServerContext* context,
      grpc::ServerReader<v1::RegisterModelStreamRequest>* reader,
      v1::RegisterModelStreamResponse* response) override;
  grpc::Status GetModel(grpc::ServerContext* context,
                        const v1::GetModelRequest* request,
                        v1::GetModelResponse* response) override;
  grpc::Status Stats(grpc::ServerContext* context,
                     const v1::StatsRequest* request,
                     v1::StatsResponse* response) override;

 private:
  // Registers `request` (from either RPC) and logs it.
  grpc::Status Register(const ModelScope& models,
                        v1::RegisterModelRequest request,
                        v1::RegisterModelResponse& response);
  grpc::Status CodecStateTooLarge(const std::string& model) const;
  // A Get with region_target: the data goes into the caller's region.
  grpc::Status GetIntoRegion(grpc::ServerContext* context,
                             const v1::GetRequest& request,
                             const Caller& caller, const ReadScope& scope,
                             const GetQuery& query, OpenStream& stream,
                             grpc::ServerWriter<v1::GetResponse>& writer);

  CacheEngine* engine_;
  const TenantDirectoryHolder* tenants_;
  StreamLimiter* streams_;
  const uint64_t max_codec_state_bytes_;
  const transport::RegionRegistry* regions_ = nullptr;
};

}  // namespace seqkv

#endif  // SEQKV_SERVER_KVCACHE_SERVICE_H_
