// Keys of trie nodes: a 128-bit chained hash, so a node's key commits to its
// namespace, model and every token before it.
#ifndef SEQKV_STORAGE_NODE_KEY_H_
#define SEQKV_STORAGE_NODE_KEY_H_

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace seqkv {

struct NodeKey {
  uint64_t high = 0;
  uint64_t low = 0;

  static constexpr size_t kSize = 16;
  // Big-endian bytes, so RocksDB's byte order groups keys sensibly.
  std::string Bytes() const;
  void AppendTo(std::string& out) const;
  // `bytes` must hold at least kSize bytes.
  static NodeKey FromBytes(std::string_view bytes);
  std::string Hex() const;

  friend bool operator==(const NodeKey&, const NodeKey&) = default;
  template <typename H>
  friend H AbslHashValue(H h, const NodeKey& key) {
    return H::combine(std::move(h), key.high, key.low);
  }
};

// The root of one model's trie in one namespace. `model_fingerprint` should
// change whenever the stored bytes would (name and layout).
NodeKey RootKey(std::string_view name_space,
                std::string_view model_fingerprint);

// The key of the child of `parent` holding `tokens`.
NodeKey ChildKey(const NodeKey& parent, std::span<const int32_t> tokens);

}  // namespace seqkv

#endif  // SEQKV_STORAGE_NODE_KEY_H_
