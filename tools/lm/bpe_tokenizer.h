// A byte-level BPE tokenizer read from a Hugging Face tokenizer.json: GPT-2
// pre-tokenizer regex, the ByteLevel byte<->character map, ranked merges, and
// added (special) tokens that are matched verbatim before anything else.
#ifndef SEQKV_TOOLS_LM_BPE_TOKENIZER_H_
#define SEQKV_TOOLS_LM_BPE_TOKENIZER_H_

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace seqkv::lm {

class BpeTokenizer {
 public:
  // Reads a tokenizer.json whose model is BPE with a ByteLevel
  // pre-tokenizer; anything else gives UNIMPLEMENTED naming it.
  static absl::StatusOr<BpeTokenizer> Load(const std::string& path);
  static absl::StatusOr<BpeTokenizer> Parse(const std::string& json_text);

  // Text (UTF-8) to token ids. Invalid UTF-8 gives INVALID_ARGUMENT.
  absl::StatusOr<std::vector<int32_t>> Encode(std::string_view text) const;
  // Token ids to bytes (special tokens as their text). An id outside the
  // vocabulary gives INVALID_ARGUMENT.
  absl::StatusOr<std::string> Decode(std::span<const int32_t> ids) const;

  size_t vocab_size() const { return id_to_token_.size(); }

 private:
  absl::Status EncodePiece(std::string_view bytes,
                           std::vector<int32_t>& out) const;
  absl::Status EncodeOrdinary(std::string_view text,
                              std::vector<int32_t>& out) const;

  std::vector<std::string> id_to_token_;  // byte-level strings, UTF-8
  std::vector<bool> is_special_;
  std::unordered_map<std::string, int32_t> token_to_id_;
  // "left right" -> rank; byte-level symbols never contain a plain space.
  std::unordered_map<std::string, int32_t> merge_rank_;
  std::vector<std::pair<std::string, int32_t>> special_tokens_;
  std::array<std::string, 256> byte_to_symbol_;
  std::unordered_map<uint32_t, uint8_t> symbol_to_byte_;
};

}  // namespace seqkv::lm

#endif  // SEQKV_TOOLS_LM_BPE_TOKENIZER_H_
