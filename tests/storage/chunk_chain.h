// Test helper: the trie nodes a Put of `tokens` would add below `root`.
#ifndef SEQKV_TESTS_STORAGE_CHUNK_CHAIN_H_
#define SEQKV_TESTS_STORAGE_CHUNK_CHAIN_H_

#include <algorithm>
#include <cstdint>
#include <span>
#include <vector>

#include "storage/node_key.h"
#include "storage/trie.h"

namespace seqkv {

// One pending node per chunk of `chunk` tokens (the last may be shorter),
// each the child of the one before: key, parent, tokens, depth, first
// position and a payload key. Callers add the other record fields they need.
inline std::vector<PendingNode> ChunkChain(const NodeKey& root,
                                           std::span<const int32_t> tokens,
                                           uint32_t chunk) {
  std::vector<PendingNode> nodes;
  NodeKey parent = root;
  for (size_t start = 0; start < tokens.size(); start += chunk) {
    const auto part =
        tokens.subspan(start, std::min<size_t>(chunk, tokens.size() - start));
    PendingNode node;
    node.key = ChildKey(parent, part);
    node.record.set_parent_key(parent.Bytes());
    node.record.mutable_tokens()->Add(part.begin(), part.end());
    node.record.set_first_position(start);
    node.record.set_depth(static_cast<uint32_t>(start / chunk));
    node.record.set_payload_key(node.key.Bytes() + "p");
    parent = node.key;
    nodes.push_back(std::move(node));
  }
  return nodes;
}

}  // namespace seqkv

#endif  // SEQKV_TESTS_STORAGE_CHUNK_CHAIN_H_
