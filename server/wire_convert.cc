#include "server/wire_convert.h"

#include <algorithm>
#include <bit>
#include <cstring>

#include "absl/base/internal/endian.h"
#include "absl/strings/str_cat.h"
#include "proto/layout_convert.h"
#include "server/request_text.h"

namespace seqkv {

absl::StatusOr<std::span<const int32_t>> DecodeTokens(
    const google::protobuf::RepeatedField<int32_t>& repeated,
    const std::string& packed, uint32_t max_tokens,
    std::vector<int32_t>& storage) {
  std::span<const int32_t> tokens(repeated.data(),
                                  static_cast<size_t>(repeated.size()));
  if (!packed.empty()) {
    if (!tokens.empty())
      return absl::InvalidArgumentError(
          "tokens and packed_tokens are both set; send one");
    if (packed.size() % sizeof(int32_t) != 0)
      return absl::InvalidArgumentError(
          absl::StrCat("packed_tokens has ", packed.size(),
                       " bytes, not a whole number of int32 ids"));
    if (packed.size() / sizeof(int32_t) > max_tokens)
      return absl::InvalidArgumentError(
          absl::StrCat("packed_tokens has ", packed.size() / sizeof(int32_t),
                       " ids, more than the limit of ", max_tokens));
    storage.resize(packed.size() / sizeof(int32_t));
    if constexpr (std::endian::native == std::endian::little) {
      std::memcpy(storage.data(), packed.data(), packed.size());
    } else {
      for (size_t i = 0; i < storage.size(); ++i)
        storage[i] = static_cast<int32_t>(
            absl::little_endian::Load32(packed.data() + i * sizeof(int32_t)));
    }
    tokens = storage;
  }
  if (tokens.size() > max_tokens)
    return absl::InvalidArgumentError(
        absl::StrCat("tokens has ", tokens.size(),
                     " ids, more than the limit of ", max_tokens));
  // A branch-free scan of the sign bits first (an OR vectorizes with any
  // instruction set); the position only on error.
  uint32_t signs = 0;
  for (const int32_t token : tokens) signs |= static_cast<uint32_t>(token);
  if (signs >> 31 != 0) {
    const size_t i = std::find_if(tokens.begin(), tokens.end(),
                                  [](int32_t token) { return token < 0; }) -
                     tokens.begin();
    return absl::InvalidArgumentError(
        absl::StrCat("tokens[", i, "] is negative (", tokens[i], ")"));
  }
  return tokens;
}

namespace {

absl::Status CheckCodecSpec(absl::string_view field, const std::string& spec) {
  if (spec.size() > kMaxCodecSpecBytes)
    return absl::InvalidArgumentError(absl::StrCat(
        field, " is ", spec.size(), " bytes long, more than the limit of ",
        kMaxCodecSpecBytes));
  return absl::OkStatus();
}

// Whether a request asks for chunks held as they were Put only.
absl::StatusOr<bool> ExactOnly(v1::Fidelity min_fidelity) {
  switch (min_fidelity) {
    case v1::FIDELITY_UNSPECIFIED:
    case v1::FIDELITY_LOSSY:
      return false;
    case v1::FIDELITY_EXACT:
      return true;
    default:
      return absl::InvalidArgumentError(absl::StrCat(
          "min_fidelity must be FIDELITY_EXACT, FIDELITY_LOSSY or unset; got ",
          static_cast<int>(min_fidelity)));
  }
}

}  // namespace

absl::StatusOr<LookupQuery> ToLookupQuery(const v1::LookupRequest& request,
                                          uint32_t max_tokens,
                                          DecodedIds& ids) {
  if (auto status = CheckName("model", request.model()); !status.ok())
    return status;
  const std::string& packed_digests = request.chunk_digests();
  if (packed_digests.size() % sizeof(uint64_t) != 0)
    return absl::InvalidArgumentError(
        absl::StrCat("chunk_digests has ", packed_digests.size(),
                     " bytes, not a whole number of 8-byte digests"));
  ids.digests.resize(packed_digests.size() / sizeof(uint64_t));
  for (size_t i = 0; i < ids.digests.size(); ++i)
    ids.digests[i] = absl::little_endian::Load64(packed_digests.data() +
                                                 i * sizeof(uint64_t));
  auto tokens = DecodeTokens(request.tokens(), request.packed_tokens(),
                             max_tokens, ids.tokens);
  if (!tokens.ok()) return tokens.status();
  auto exact_only = ExactOnly(request.min_fidelity());
  if (!exact_only.ok()) return exact_only.status();
  return LookupQuery{.model = request.model(),
                     .chunk_digests = ids.digests,
                     .tokens = *tokens,
                     .alignment = request.alignment(),
                     .exact_only = *exact_only,
                     .head_chunks = request.head_chunks()};
}

absl::StatusOr<PutSpec> ToPutSpec(const v1::PutHeader& header,
                                  uint32_t max_tokens) {
  if (auto status = CheckName("header.model", header.model()); !status.ok())
    return status;
  if (auto status = CheckCodecSpec("header.codec", header.codec());
      !status.ok())
    return status;
  std::vector<int32_t> storage;
  auto tokens = DecodeTokens(header.tokens(), header.packed_tokens(),
                             max_tokens, storage);
  if (!tokens.ok())
    return absl::InvalidArgumentError(
        absl::StrCat("header.", tokens.status().message()));
  PutSpec spec{.model = header.model(), .codec = header.codec()};
  if (storage.empty())
    spec.tokens.assign(tokens->begin(), tokens->end());
  else
    spec.tokens = std::move(storage);
  if (header.has_layout()) {
    auto layout = LayoutFromProto(header.layout());
    if (!layout.ok()) return layout.status();
    spec.layout = *layout;
  }
  return spec;
}

absl::StatusOr<GetQuery> ToGetQuery(const v1::GetRequest& request,
                                    uint32_t max_tokens, DecodedIds& ids) {
  if (auto status = CheckName("model", request.model()); !status.ok())
    return status;
  auto tokens = DecodeTokens(request.tokens(), request.packed_tokens(),
                             max_tokens, ids.tokens);
  if (!tokens.ok()) return tokens.status();
  auto exact_only = ExactOnly(request.min_fidelity());
  if (!exact_only.ok()) return exact_only.status();
  return GetQuery{.model = request.model(),
                  .tokens = *tokens,
                  .alignment = request.alignment(),
                  .begin_token = request.begin_token(),
                  .end_token = request.end_token(),
                  .exact_only = *exact_only};
}

absl::StatusOr<std::span<const int32_t>> ToDeleteTokens(
    const v1::DeleteRequest& request, uint32_t max_tokens, DecodedIds& ids) {
  if (auto status = CheckName("model", request.model()); !status.ok())
    return status;
  return DecodeTokens(request.tokens(), request.packed_tokens(), max_tokens,
                      ids.tokens);
}

absl::StatusOr<ModelSpec> ToModelSpec(v1::RegisterModelRequest& request) {
  if (auto status = CheckName("model", request.model()); !status.ok())
    return status;
  if (auto status = CheckCodecSpec("default_codec", request.default_codec());
      !status.ok())
    return status;
  for (const auto& [key, blob] : request.codec_state())
    if (auto status = CheckName("a codec_state key", key); !status.ok())
      return status;
  if (!request.has_layout())
    return absl::InvalidArgumentError("layout is missing");
  auto layout = LayoutFromProto(request.layout());
  if (!layout.ok()) return layout.status();
  ModelSpec spec{.name = request.model(),
                 .layout = *layout,
                 .chunk_tokens = request.chunk_tokens(),
                 .default_codec = request.default_codec()};
  for (auto& [key, blob] : *request.mutable_codec_state())
    spec.codec_state[key] = std::move(blob);
  request.clear_codec_state();
  return spec;
}

v1::PutResponse ToPutResponse(const PutSummary& summary) {
  v1::PutResponse response;
  response.set_tokens(summary.tokens);
  response.set_chunks_new(summary.chunks_new);
  response.set_chunks_deduped(summary.chunks_deduped);
  response.set_bytes_logical(summary.bytes_logical);
  response.set_bytes_stored(summary.bytes_stored);
  response.set_codec(summary.codec);
  response.set_tokens_new(summary.reuse.tokens_new);
  response.set_tokens_deduped(summary.reuse.tokens_deduped);
  response.set_tokens_split_deduped(summary.reuse.tokens_split_deduped);
  response.set_tokens_cross_prefix(summary.reuse.tokens_cross_prefix);
  return response;
}

v1::GetHeader ToGetHeader(const GetPlan& plan) {
  v1::GetHeader header;
  header.set_model(plan.model);
  *header.mutable_layout() = LayoutToProto(plan.layout);
  header.set_matched_tokens(plan.matched_tokens);
  header.set_begin_token(plan.begin_token);
  header.set_end_token(plan.end_token);
  header.set_data_bytes(plan.data_bytes);
  header.set_namespace_(plan.name_space);
  for (const ServedRange& served : plan.served) {
    v1::FidelityRange* range = header.add_fidelity();
    range->set_begin_token(served.begin_token);
    range->set_end_token(served.end_token);
    range->set_fidelity(served.lossy_tier > 0 ? v1::FIDELITY_LOSSY
                                              : v1::FIDELITY_EXACT);
    range->set_codec(served.codec);
  }
  return header;
}

v1::GetModelResponse ToGetModelResponse(const ModelInfo& info) {
  v1::GetModelResponse response;
  response.set_model(info.name);
  *response.mutable_layout() = LayoutToProto(info.layout);
  response.set_chunk_tokens(info.chunk_tokens);
  response.set_default_codec(info.default_codec);
  for (const std::string& key : info.codec_state_keys)
    response.add_codec_state_keys(key);
  return response;
}

}  // namespace seqkv
