#include "client/get_stream.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "proto/layout_convert.h"

namespace seqkv {

GetStreamAssembler::GetStreamAssembler(std::span<const int32_t> tokens,
                                       KvCache& cache)
    : tokens_(tokens), cache_(cache) {
  cache_.tokens.clear();
}

absl::Status GetStreamAssembler::Add(const v1::GetResponse& message) {
  switch (message.message_case()) {
    case v1::GetResponse::kHeader:
      return AddHeader(message.header());
    case v1::GetResponse::kData:
      return AddData(message.data());
    default:
      return absl::DataLossError("server sent an empty Get message");
  }
}

absl::Status GetStreamAssembler::AddHeader(const v1::GetHeader& header) {
  if (have_header_) return absl::DataLossError("server sent a second header");
  auto layout = LayoutFromProto(header.layout());
  if (!layout.ok())
    return absl::DataLossError(
        absl::StrCat("server sent a bad layout: ", layout.status().message()));
  if (header.end_token() < header.begin_token() ||
      header.end_token() > tokens_.size())
    return absl::DataLossError("server sent a bad token range");
  cache_.layout = *layout;
  cache_.tokens.assign(tokens_.begin() + header.begin_token(),
                       tokens_.begin() + header.end_token());
  expected_ = uint64_t{cache_.layout.bytes_per_token()} * cache_.tokens.size();
  if (header.data_bytes() != expected_)
    return absl::DataLossError("server announced a bad data size");
  cache_.ResizeTensors();
  have_header_ = true;
  return absl::OkStatus();
}

absl::Status GetStreamAssembler::AddData(std::string_view data) {
  if (!have_header_) return absl::DataLossError("data before the header");
  if (received_ + data.size() > expected_)
    return absl::DataLossError("server sent more data than announced");
  // Straight from the piece into place, whatever the piece's bounds.
  cache_.ScatterTokenMajor(received_, std::as_bytes(std::span(data)));
  received_ += data.size();
  return absl::OkStatus();
}

absl::Status GetStreamAssembler::Finish() const {
  if (!have_header_) return absl::DataLossError("no header in Get response");
  if (received_ != expected_)
    return absl::DataLossError("Get stream ended early");
  return absl::OkStatus();
}

}  // namespace seqkv
