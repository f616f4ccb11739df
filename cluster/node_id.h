// A node's cluster identity, kept in its data directory: the same data
// directory is the same node after a restart, whatever address it has.
#ifndef SEQKV_CLUSTER_NODE_ID_H_
#define SEQKV_CLUSTER_NODE_ID_H_

#include <string>

#include "absl/status/statusor.h"

namespace seqkv::cluster {

// Reads `data_dir`/CLUSTER_NODE_ID, or writes a new random id there first.
absl::StatusOr<std::string> LoadOrCreateNodeId(const std::string& data_dir);

}  // namespace seqkv::cluster

#endif  // SEQKV_CLUSTER_NODE_ID_H_
