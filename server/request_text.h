// Client-supplied strings: the bounds and encoding a name must have, and
// how any such string is quoted in an error so that no error can outgrow
// gRPC's metadata limit (a status message travels in a trailer, where
// gRPC refuses more than about 8 KiB).
#ifndef SEQKV_SERVER_REQUEST_TEXT_H_
#define SEQKV_SERVER_REQUEST_TEXT_H_

#include <cstddef>
#include <string>
#include "absl/strings/string_view.h"

#include "absl/status/status.h"

namespace seqkv {

// The longest model name, namespace or codec state key, in bytes.
inline constexpr size_t kMaxNameBytes = 256;
// The longest codec spec ("turbo:2", "predictive:...").
inline constexpr size_t kMaxCodecSpecBytes = 1024;
// The longest status message the server sends.
inline constexpr size_t kMaxStatusMessageBytes = 2048;

// Whether `text` is well-formed UTF-8 (no overlong forms, surrogates or
// code points past U+10FFFF); otherwise `bad_offset` gets the first bad
// byte's offset.
bool IsValidUtf8(absl::string_view text, size_t* bad_offset = nullptr);

// OK, or INVALID_ARGUMENT naming `field` when `value` is empty, longer
// than `max_bytes`, not UTF-8, or holds a control character (U+0000 to
// U+001F, U+007F): names become storage keys and log lines.
absl::Status CheckName(absl::string_view field, absl::string_view value,
                       size_t max_bytes = kMaxNameBytes);

// `text` in single quotes for an error message: at most `max_bytes` of it,
// bytes that are not printable ASCII escaped (\n, \xff), and a note of
// its full size when cut.
std::string Quoted(absl::string_view text, size_t max_bytes = 96);

// `message` cut to kMaxStatusMessageBytes (on a UTF-8 boundary), so that
// it fits a trailer whatever it quotes.
std::string BoundedStatusMessage(absl::string_view message);

}  // namespace seqkv

#endif  // SEQKV_SERVER_REQUEST_TEXT_H_
