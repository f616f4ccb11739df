#include "server/request_text.h"

#include <cstdint>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace seqkv {

bool IsValidUtf8(absl::string_view text, size_t* bad_offset) {
  const auto* s = reinterpret_cast<const uint8_t*>(text.data());
  const size_t n = text.size();
  size_t i = 0;
  while (i < n) {
    const uint8_t c = s[i];
    size_t len = 0;
    uint32_t min = 0, code = 0;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      len = 2, min = 0x80, code = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3, min = 0x800, code = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4, min = 0x10000, code = c & 0x07;
    }
    bool ok = len != 0 && i + len <= n;
    for (size_t k = 1; ok && k < len; ++k) {
      ok = (s[i + k] & 0xC0) == 0x80;
      code = (code << 6) | (s[i + k] & 0x3F);
    }
    ok = ok && code >= min && code <= 0x10FFFF &&
         !(code >= 0xD800 && code <= 0xDFFF);
    if (!ok) {
      if (bad_offset != nullptr) *bad_offset = i;
      return false;
    }
    i += len;
  }
  return true;
}

absl::Status CheckName(absl::string_view field, absl::string_view value,
                       size_t max_bytes) {
  if (value.empty())
    return absl::InvalidArgumentError(absl::StrCat(field, " is empty"));
  if (value.size() > max_bytes)
    return absl::InvalidArgumentError(
        absl::StrCat(field, " is ", value.size(),
                     " bytes long, more than the limit of ", max_bytes));
  size_t bad = 0;
  if (!IsValidUtf8(value, &bad))
    return absl::InvalidArgumentError(absl::StrCat(
        field, " is not valid UTF-8 (byte ", bad, " of ", Quoted(value), ")"));
  for (size_t i = 0; i < value.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(value[i]);
    if (c < 0x20 || c == 0x7F)
      return absl::InvalidArgumentError(
          absl::StrCat(field, " holds a control character at byte ", i,
                       " of ", Quoted(value)));
  }
  return absl::OkStatus();
}

std::string Quoted(absl::string_view text, size_t max_bytes) {
  const bool cut = text.size() > max_bytes;
  std::string out = "'";
  out += absl::CHexEscape(std::string(text.substr(0, max_bytes)));
  out += "'";
  if (cut) absl::StrAppend(&out, "... (", text.size(), " bytes)");
  return out;
}

std::string BoundedStatusMessage(absl::string_view message) {
  if (message.size() <= kMaxStatusMessageBytes) return std::string(message);
  const absl::string_view kCut = "... (message cut)";
  size_t end = kMaxStatusMessageBytes - kCut.size();
  // Not inside a UTF-8 sequence: back up over continuation bytes.
  while (end > 0 && (static_cast<unsigned char>(message[end]) & 0xC0) == 0x80)
    --end;
  return absl::StrCat(message.substr(0, end), kCut);
}

}  // namespace seqkv
