// The most visited trie nodes: which cached prefixes serve the hits.
#ifndef SEQKV_SERVER_DASHBOARD_TOP_PREFIXES_H_
#define SEQKV_SERVER_DASHBOARD_TOP_PREFIXES_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "storage/trie.h"

namespace seqkv {

// The most a report may list: the scan keeps this many candidates in memory.
inline constexpr size_t kMaxTopPrefixes = 1000;

struct PrefixVisits {
  NodeKey key;
  storage::v1::NodeRecord record;
  uint64_t visits = 0;
  int64_t last_used_micros = 0;
};

struct TopPrefixes {
  std::vector<PrefixVisits> prefixes;  // most visits first
  uint64_t nodes_scanned = 0;
};

// Scans the node stats for the `top` nodes with the most visits (ties: the
// most recently used first), reading the node records only of candidates
// that would enter the list. `name_space` empty: every namespace. Nodes
// never visited are not listed. `top` must be in [1, kMaxTopPrefixes].
absl::StatusOr<TopPrefixes> FindTopPrefixes(const Trie& trie,
                                            const std::string& name_space,
                                            size_t top);

}  // namespace seqkv

#endif  // SEQKV_SERVER_DASHBOARD_TOP_PREFIXES_H_
