// Label values of the Prometheus text format that /metrics serves.
#ifndef SEQKV_SERVER_PROMETHEUS_LABEL_H_
#define SEQKV_SERVER_PROMETHEUS_LABEL_H_

#include <string>
#include <string_view>

namespace seqkv {

// `value` with backslash, double quote and newline escaped, to stand
// between the quotes of a label (tenant names are the callers' own).
inline std::string PrometheusLabelValue(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    if (c == '\\' || c == '"') out.push_back('\\');
    out.push_back(c);
  }
  return out;
}

}  // namespace seqkv

#endif  // SEQKV_SERVER_PROMETHEUS_LABEL_H_
