// The dashboard's files, compiled into the server so that it needs nothing
// at run time: no install path, no network.
#ifndef SEQKV_SERVER_DASHBOARD_ASSETS_H_
#define SEQKV_SERVER_DASHBOARD_ASSETS_H_

#include <span>
#include <string_view>

namespace seqkv {

struct DashboardAsset {
  std::string_view url_path;  // "/", "/static/dashboard.js", ...
  std::string_view content_type;
  std::string_view body;
};

std::span<const DashboardAsset> DashboardAssets();

}  // namespace seqkv

#endif  // SEQKV_SERVER_DASHBOARD_ASSETS_H_
