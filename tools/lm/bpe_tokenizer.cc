#include "tools/lm/bpe_tokenizer.h"

#include <unicode/uchar.h>
#include <unicode/utf8.h>

#include <fstream>
#include <limits>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace seqkv::lm {
namespace {

using nlohmann::json;

void AppendUtf8(uint32_t code_point, std::string& out) {
  char buffer[4];
  int32_t length = 0;
  UBool error = false;
  U8_APPEND(buffer, length, 4, code_point, error);
  if (!error) out.append(buffer, length);
}

// GPT-2's map from bytes to printable characters: printable Latin-1 bytes map
// to themselves, the others to U+0100 onwards in byte order.
std::array<uint32_t, 256> ByteToCodePoint() {
  std::array<uint32_t, 256> map{};
  std::array<bool, 256> direct{};
  for (int b = '!'; b <= '~'; ++b) direct[b] = true;
  for (int b = 0xA1; b <= 0xAC; ++b) direct[b] = true;
  for (int b = 0xAE; b <= 0xFF; ++b) direct[b] = true;
  uint32_t next = 256;
  for (int b = 0; b < 256; ++b) map[b] = direct[b] ? b : next++;
  return map;
}

enum class CharClass { kLetter, kNumber, kSpace, kOther };

CharClass Classify(UChar32 c) {
  if (u_isUWhiteSpace(c)) return CharClass::kSpace;
  const uint32_t mask = U_GET_GC_MASK(c);
  if (mask & U_GC_L_MASK) return CharClass::kLetter;
  if (mask & U_GC_N_MASK) return CharClass::kNumber;
  return CharClass::kOther;
}

struct CodePoint {
  UChar32 value;
  size_t begin;  // byte offsets in the text
  size_t end;
  CharClass type;
};

// Splits text the way the GPT-2 pattern
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// does, returning byte ranges.
std::vector<std::pair<size_t, size_t>> PreTokenize(
    const std::vector<CodePoint>& cps) {
  std::vector<std::pair<size_t, size_t>> pieces;
  const size_t n = cps.size();
  auto emit = [&](size_t from, size_t to) {
    pieces.emplace_back(cps[from].begin, cps[to - 1].end);
  };
  size_t i = 0;
  while (i < n) {
    // Contractions.
    if (cps[i].value == '\'' && i + 1 < n) {
      static constexpr std::string_view kSuffixes[] = {"s", "t",  "re", "ve",
                                                       "m", "ll", "d"};
      size_t matched = 0;
      for (std::string_view suffix : kSuffixes) {
        if (i + suffix.size() >= n) continue;
        bool ok = true;
        for (size_t s = 0; s < suffix.size(); ++s)
          ok &= cps[i + 1 + s].value == UChar32(suffix[s]);
        if (ok) {
          matched = suffix.size();
          break;
        }
      }
      if (matched > 0) {
        emit(i, i + 1 + matched);
        i += 1 + matched;
        continue;
      }
    }
    // ' ?' followed by a run of one class (letters, numbers, other).
    size_t start = i;
    size_t j = i;
    if (cps[j].value == ' ' && j + 1 < n &&
        cps[j + 1].type != CharClass::kSpace)
      ++j;
    if (cps[j].type != CharClass::kSpace) {
      const CharClass run = cps[j].type;
      while (j < n && cps[j].type == run) ++j;
      emit(start, j);
      i = j;
      continue;
    }
    // Whitespace: leave the last one for the next word unless at the end.
    j = i;
    while (j < n && cps[j].type == CharClass::kSpace) ++j;
    if (j < n && j - i >= 2) --j;
    emit(i, j);
    i = j;
  }
  return pieces;
}

}  // namespace

absl::StatusOr<BpeTokenizer> BpeTokenizer::Load(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::stringstream text;
  text << in.rdbuf();
  auto tokenizer = Parse(text.str());
  if (!tokenizer.ok())
    return absl::Status(tokenizer.status().code(),
                        absl::StrCat(path, ": ", tokenizer.status().message()));
  return tokenizer;
}

absl::StatusOr<BpeTokenizer> BpeTokenizer::Parse(const std::string& json_text) {
  json root = json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded() || !root.is_object())
    return absl::InvalidArgumentError("tokenizer.json is not a JSON object");
  const json& model = root["model"];
  if (!model.is_object() || model.value("type", "") != "BPE")
    return absl::UnimplementedError("tokenizer model type is not BPE");
  const json& pre = root["pre_tokenizer"];
  if (!pre.is_object() || pre.value("type", "") != "ByteLevel")
    return absl::UnimplementedError("tokenizer pre_tokenizer is not ByteLevel");
  if (pre.value("add_prefix_space", false))
    return absl::UnimplementedError(
        "ByteLevel add_prefix_space = true is not implemented");
  if (root.contains("normalizer") && !root["normalizer"].is_null())
    return absl::UnimplementedError(
        "tokenizer normalizers are not implemented");
  if (!model.contains("vocab") || !model["vocab"].is_object())
    return absl::InvalidArgumentError("tokenizer model has no vocab object");

  BpeTokenizer tokenizer;
  const json& vocab = model["vocab"];
  for (const auto& [token, id] : vocab.items()) {
    if (!id.is_number_unsigned() || id.get<uint64_t>() >= (1u << 24))
      return absl::InvalidArgumentError(
          absl::StrCat("tokenizer vocab entry '", token, "' has a bad id"));
    const uint32_t index = id.get<uint32_t>();
    if (index >= tokenizer.id_to_token_.size())
      tokenizer.id_to_token_.resize(index + 1);
    tokenizer.id_to_token_[index] = token;
    tokenizer.token_to_id_[token] = static_cast<int32_t>(index);
  }
  tokenizer.is_special_.assign(tokenizer.id_to_token_.size(), false);
  if (root.contains("added_tokens") && root["added_tokens"].is_array()) {
    for (const json& added : root["added_tokens"]) {
      if (!added.is_object() || !added["content"].is_string() ||
          !added["id"].is_number_unsigned() ||
          added["id"].get<uint64_t>() >= tokenizer.id_to_token_.size() + 1024)
        return absl::InvalidArgumentError("tokenizer has a bad added token");
      const uint32_t id = added["id"].get<uint32_t>();
      const std::string content = added["content"].get<std::string>();
      if (id >= tokenizer.id_to_token_.size()) {
        tokenizer.id_to_token_.resize(id + 1);
        tokenizer.is_special_.resize(id + 1, false);
      }
      tokenizer.id_to_token_[id] = content;
      tokenizer.is_special_[id] = true;
      if (!content.empty())
        tokenizer.special_tokens_.emplace_back(content,
                                               static_cast<int32_t>(id));
    }
  }
  if (!model.contains("merges") || !model["merges"].is_array())
    return absl::InvalidArgumentError("tokenizer model has no merges list");
  int32_t rank = 0;
  for (const json& merge : model["merges"]) {
    std::string key;
    if (merge.is_string()) {  // older format: "left right"
      key = merge.get<std::string>();
    } else if (merge.is_array() && merge.size() == 2 && merge[0].is_string() &&
               merge[1].is_string()) {
      key = absl::StrCat(merge[0].get<std::string>(), " ",
                         merge[1].get<std::string>());
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("tokenizer merge ", rank, " is malformed"));
    }
    tokenizer.merge_rank_.emplace(std::move(key), rank++);
  }
  const auto code_points = ByteToCodePoint();
  for (int b = 0; b < 256; ++b) {
    AppendUtf8(code_points[b], tokenizer.byte_to_symbol_[b]);
    tokenizer.symbol_to_byte_[code_points[b]] = static_cast<uint8_t>(b);
  }
  return tokenizer;
}

absl::Status BpeTokenizer::EncodePiece(std::string_view bytes,
                                       std::vector<int32_t>& out) const {
  std::vector<std::string> symbols;
  symbols.reserve(bytes.size());
  for (char c : bytes) symbols.push_back(byte_to_symbol_[uint8_t(c)]);
  // Repeatedly merge the adjacent pair with the lowest rank (leftmost on
  // ties), as the reference BPE does.
  std::string key;
  while (symbols.size() > 1) {
    int32_t best_rank = std::numeric_limits<int32_t>::max();
    size_t best = 0;
    for (size_t i = 0; i + 1 < symbols.size(); ++i) {
      key.assign(symbols[i]).append(" ").append(symbols[i + 1]);
      auto it = merge_rank_.find(key);
      if (it != merge_rank_.end() && it->second < best_rank) {
        best_rank = it->second;
        best = i;
      }
    }
    if (best_rank == std::numeric_limits<int32_t>::max()) break;
    symbols[best] += symbols[best + 1];
    symbols.erase(symbols.begin() + best + 1);
  }
  for (const std::string& symbol : symbols) {
    auto it = token_to_id_.find(symbol);
    if (it == token_to_id_.end())
      return absl::FailedPreconditionError(absl::StrCat(
          "tokenizer: symbol '", symbol, "' is not in the vocabulary"));
    out.push_back(it->second);
  }
  return absl::OkStatus();
}

absl::Status BpeTokenizer::EncodeOrdinary(std::string_view text,
                                          std::vector<int32_t>& out) const {
  std::vector<CodePoint> cps;
  const auto* data = reinterpret_cast<const uint8_t*>(text.data());
  const int32_t length = static_cast<int32_t>(text.size());
  for (int32_t offset = 0; offset < length;) {
    const int32_t begin = offset;
    UChar32 c;
    U8_NEXT(data, offset, length, c);
    if (c < 0)
      return absl::InvalidArgumentError(
          absl::StrCat("text is not valid UTF-8 at byte ", begin));
    cps.push_back({c, size_t(begin), size_t(offset), Classify(c)});
  }
  for (const auto& [begin, end] : PreTokenize(cps))
    if (auto status = EncodePiece(text.substr(begin, end - begin), out);
        !status.ok())
      return status;
  return absl::OkStatus();
}

absl::StatusOr<std::vector<int32_t>> BpeTokenizer::Encode(
    std::string_view text) const {
  if (text.size() > size_t{std::numeric_limits<int32_t>::max()})
    return absl::InvalidArgumentError("text is too long to tokenize");
  std::vector<int32_t> out;
  // Special tokens are cut out first; the text between them is ordinary.
  while (!text.empty()) {
    size_t best = std::string_view::npos;
    const std::pair<std::string, int32_t>* match = nullptr;
    for (const auto& special : special_tokens_) {
      const size_t at = text.find(special.first);
      if (at < best || (at == best && at != std::string_view::npos &&
                        special.first.size() > match->first.size())) {
        best = at;
        match = &special;
      }
    }
    const std::string_view before = text.substr(0, best);
    if (auto status = EncodeOrdinary(before, out); !status.ok()) return status;
    if (match == nullptr) break;
    out.push_back(match->second);
    text.remove_prefix(best + match->first.size());
  }
  return out;
}

absl::StatusOr<std::string> BpeTokenizer::Decode(
    std::span<const int32_t> ids) const {
  std::string out;
  for (int32_t id : ids) {
    if (id < 0 || size_t(id) >= id_to_token_.size())
      return absl::InvalidArgumentError(
          absl::StrCat("token id ", id, " is outside the vocabulary"));
    const std::string& token = id_to_token_[id];
    if (is_special_[id]) {
      out += token;
      continue;
    }
    const auto* data = reinterpret_cast<const uint8_t*>(token.data());
    const int32_t length = static_cast<int32_t>(token.size());
    for (int32_t offset = 0; offset < length;) {
      UChar32 c;
      U8_NEXT(data, offset, length, c);
      auto it = c < 0 ? symbol_to_byte_.end() : symbol_to_byte_.find(c);
      if (it == symbol_to_byte_.end())
        return absl::DataLossError(absl::StrCat(
            "token ", id, " holds a character outside the byte map"));
      out.push_back(static_cast<char>(it->second));
    }
  }
  return out;
}

}  // namespace seqkv::lm
