#include "cluster/node_id.h"

#include <filesystem>
#include <fstream>
#include <random>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "cluster/member.h"

namespace seqkv::cluster {

absl::StatusOr<std::string> LoadOrCreateNodeId(const std::string& data_dir) {
  const std::string path = absl::StrCat(data_dir, "/CLUSTER_NODE_ID");
  if (std::ifstream in(path); in) {
    std::string id;
    std::getline(in, id);
    id = std::string(absl::StripAsciiWhitespace(id));
    if (!ValidName(id))
      return absl::DataLossError(absl::StrCat(
          path, " holds no valid node id (1 to 128 of [A-Za-z0-9._-])"));
    return id;
  }
  std::random_device random;
  const std::string id =
      absl::StrFormat("node-%08x%08x", static_cast<uint32_t>(random()),
                      static_cast<uint32_t>(random()));
  const std::string temporary = path + ".tmp";
  {
    std::ofstream out(temporary, std::ios::trunc);
    out << id << "\n";
    out.flush();
    if (!out)
      return absl::PermissionDeniedError(
          absl::StrCat("cannot write ", temporary));
  }
  std::error_code error;
  std::filesystem::rename(temporary, path, error);
  if (error)
    return absl::PermissionDeniedError(
        absl::StrCat("cannot write ", path, ": ", error.message()));
  return id;
}

}  // namespace seqkv::cluster
