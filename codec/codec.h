// The codec interface: one chunk of KV cache in, bytes out, and back.
#ifndef SEQKV_CODEC_CODEC_H_
#define SEQKV_CODEC_CODEC_H_

#include <cstddef>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "codec/kv_layout.h"

namespace seqkv {

// What the store knows about a model, registered once and shared by every
// chunk: its layout and named blobs of codec state (a calibration profile,
// layer-0 tables, ...). Codecs read the blobs they understand.
struct ModelContext {
  std::string name;
  KvLayout layout;
  std::map<std::string, std::string, std::less<>> codec_state;

  // Returns the named blob or nullptr.
  const std::string* FindState(std::string_view key) const {
    auto it = codec_state.find(key);
    return it == codec_state.end() ? nullptr : &it->second;
  }
};

// A codec instance is bound to one spec ("turbo:3", "predictive:rel_mse=0.01")
// and one model. Encode and Decode are const and thread-safe.
class Codec {
 public:
  virtual ~Codec() = default;

  // Canonical spec, parseable by CreateCodec.
  virtual std::string spec() const = 0;
  // True when Decode(Encode(x)) == x bit for bit.
  virtual bool lossless() const = 0;
  // True when the encoding of a chunk is the chunk itself, byte for byte
  // (`raw`): the server then stores and serves chunk buffers as they are,
  // without the copies of Encode and Decode.
  virtual bool stores_chunk_verbatim() const { return false; }
  // True when Encode codes the rows of `chunk.references`' runs as
  // residuals against their sources (and Decode then needs the same
  // references); other codecs ignore references.
  virtual bool codes_against_references() const { return false; }

  // Appends the encoding of `data` (chunk layout, chunk.num_bytes() bytes)
  // to `out`. Fails with INVALID_ARGUMENT on data this codec cannot take.
  virtual absl::Status Encode(const ChunkInfo& chunk,
                              std::span<const std::byte> data,
                              std::string& out) const = 0;

  // Decodes `encoded` into `out` (exactly chunk.num_bytes() bytes). The input
  // is untrusted: anything malformed yields DATA_LOSS, never a crash or an
  // access outside `encoded` and `out`.
  virtual absl::Status Decode(const ChunkInfo& chunk, std::string_view encoded,
                              std::span<std::byte> out) const = 0;
};

// Builds a codec from its spec for a model. Unknown names give
// INVALID_ARGUMENT; a dtype or layout the codec cannot take gives
// INVALID_ARGUMENT naming it; missing model state gives FAILED_PRECONDITION.
absl::StatusOr<std::unique_ptr<Codec>> CreateCodec(std::string_view spec,
                                                   const ModelContext& model);

// Names of the registered codec families, for help texts.
std::string ListCodecNames();

// Splits a comma-separated list of codec specs. A part of the form
// `key=value` with no ':' continues the spec before it, so
// "turbo:3,predictive:rel_mse=0.01,prerope=0" is two specs.
std::vector<std::string> SplitCodecSpecs(std::string_view list);

}  // namespace seqkv

#endif  // SEQKV_CODEC_CODEC_H_
