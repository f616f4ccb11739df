#include "codec/turbo/lloyd_max.h"

#include <array>
#include <cmath>
#include <mutex>
#include <vector>

namespace seqkv {
namespace {

constexpr int kMaxBits = 8;

double Pdf(double x) { return std::exp(-0.5 * x * x) / std::sqrt(2 * M_PI); }
double Cdf(double x) { return 0.5 * std::erfc(-x / std::sqrt(2.0)); }

// E[X | a < X < b] and P(a < X < b) for X ~ N(0, 1); infinite ends allowed.
void Cell(double a, double b, double& mean, double& mass) {
  const double pa = std::isinf(a) ? 0.0 : Pdf(a);
  const double pb = std::isinf(b) ? 0.0 : Pdf(b);
  mass = Cdf(b) - Cdf(a);
  mean = mass > 0 ? (pa - pb) / mass : 0.5 * (a + b);
}

std::vector<double> Solve(int bits) {
  const int levels = 1 << bits;
  // Start from evenly spaced points over +-3 sigma; Lloyd's iteration is a
  // contraction here and converges to the unique optimum for log-concave
  // densities.
  std::vector<double> c(levels);
  for (int i = 0; i < levels; ++i) c[i] = -3.0 + 6.0 * (i + 0.5) / levels;
  std::vector<double> next(levels);
  for (int iter = 0; iter < 200000; ++iter) {
    double change = 0;
    for (int i = 0; i < levels; ++i) {
      const double a = i == 0 ? -INFINITY : 0.5 * (c[i - 1] + c[i]);
      const double b = i == levels - 1 ? INFINITY : 0.5 * (c[i] + c[i + 1]);
      double mass;
      Cell(a, b, next[i], mass);
      change = std::max(change, std::fabs(next[i] - c[i]));
    }
    c.swap(next);
    if (change < 1e-13) break;
  }
  // Exact symmetry: average the mirror pairs.
  for (int i = 0; i < levels / 2; ++i) {
    const double m = 0.5 * (c[levels - 1 - i] - c[i]);
    c[i] = -m;
    c[levels - 1 - i] = m;
  }
  return c;
}

struct Tables {
  std::array<std::vector<double>, kMaxBits + 1> centroids;
  std::array<std::once_flag, kMaxBits + 1> once;
};

Tables& GetTables() {
  static auto* tables = new Tables();
  return *tables;
}

}  // namespace

std::span<const double> GaussianLloydMaxCentroids(int bits) {
  if (bits < 1 || bits > kMaxBits) return {};
  Tables& t = GetTables();
  std::call_once(t.once[bits], [&] { t.centroids[bits] = Solve(bits); });
  return t.centroids[bits];
}

double GaussianLloydMaxDistortion(int bits) {
  std::span<const double> c = GaussianLloydMaxCentroids(bits);
  if (c.empty()) return 0;
  // E[(X - c(X))^2] = 1 - sum_i mass_i * c_i^2 at the centroid condition.
  double kept = 0;
  const size_t levels = c.size();
  for (size_t i = 0; i < levels; ++i) {
    const double a = i == 0 ? -INFINITY : 0.5 * (c[i - 1] + c[i]);
    const double b = i == levels - 1 ? INFINITY : 0.5 * (c[i] + c[i + 1]);
    double mean, mass;
    Cell(a, b, mean, mass);
    kept += mass * c[i] * c[i];
  }
  return 1.0 - kept;
}

}  // namespace seqkv
