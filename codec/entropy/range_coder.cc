#include "codec/entropy/range_coder.h"

#include "absl/strings/str_cat.h"

namespace seqkv::entropy {

RangeDecoder::RangeDecoder(std::string_view in) : in_(in) {
  // The encoder's first byte is the carry into an empty prefix: always 0.
  if (NextByte() != 0) corrupt_ = true;
  for (size_t i = 1; i < kRangeCoderFlushBytes; ++i)
    code_ = (code_ << 8) | NextByte();
}

absl::Status RangeDecoder::Finish() const {
  if (overrun_ != 0)
    return absl::DataLossError(absl::StrCat("range coder: stream truncated (",
                                            in_.size(), " bytes, needed ",
                                            in_.size() + overrun_, ")"));
  if (position_ != in_.size())
    return absl::DataLossError(
        absl::StrCat("range coder: ", in_.size() - position_,
                     " trailing bytes after the end of the stream"));
  // A valid stream keeps code < range at every step.
  if (corrupt_ || code_ >= range_)
    return absl::DataLossError("range coder: corrupt stream");
  return absl::OkStatus();
}

}  // namespace seqkv::entropy
