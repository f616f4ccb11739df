// The pre-RoPE transform and the model-state blobs on their own.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "codec/model_state.h"
#include "codec/predictive/rope.h"

namespace seqkv {
namespace {

using predictive::RopeTable;

struct RopeCase {
  RopeStyle style;
  uint32_t head_dim;
  uint32_t rotary_dim;
};

TEST(RopeTableTest, UndoInvertsApply) {
  std::mt19937 rng(1);
  std::normal_distribution<float> normal;
  for (RopeCase c : {RopeCase{RopeStyle::kRotateHalf, 64, 0},
                     RopeCase{RopeStyle::kRotateHalf, 128, 32},
                     RopeCase{RopeStyle::kInterleaved, 256, 0},
                     RopeCase{RopeStyle::kInterleaved, 96, 64}}) {
    const RopeConfig config{c.style, 500000.0, c.rotary_dim};
    RopeTable table(config, c.head_dim, 123456, 50);
    for (uint32_t t = 0; t < 50; ++t) {
      std::vector<float> x(c.head_dim), y;
      for (float& v : x) v = normal(rng);
      y = x;
      table.Apply(t, y.data());
      table.Undo(t, y.data());
      for (uint32_t d = 0; d < c.head_dim; ++d) EXPECT_NEAR(y[d], x[d], 1e-5);
    }
  }
}

// Checks the rotation against the textbook formula for both conventions,
// including the dimensions past rotary_dim, which must not move.
TEST(RopeTableTest, MatchesDefinition) {
  const uint32_t head_dim = 16, rotary = 8;
  const double theta = 10000.0;
  const uint64_t position = 37;
  for (RopeStyle style : {RopeStyle::kRotateHalf, RopeStyle::kInterleaved}) {
    RopeTable table(RopeConfig{style, theta, rotary}, head_dim, position, 1);
    std::vector<float> x(head_dim);
    for (uint32_t d = 0; d < head_dim; ++d) x[d] = 0.1f * (d + 1);
    std::vector<float> y = x;
    table.Apply(0, y.data());
    for (uint32_t i = 0; i < rotary / 2; ++i) {
      const double angle = position * (1.0 / std::pow(theta, 2.0 * i / rotary));
      const uint32_t a = style == RopeStyle::kRotateHalf ? i : 2 * i;
      const uint32_t b =
          style == RopeStyle::kRotateHalf ? i + rotary / 2 : 2 * i + 1;
      EXPECT_NEAR(y[a], x[a] * std::cos(angle) - x[b] * std::sin(angle), 1e-4);
      EXPECT_NEAR(y[b], x[b] * std::cos(angle) + x[a] * std::sin(angle), 1e-4);
    }
    for (uint32_t d = rotary; d < head_dim; ++d) EXPECT_EQ(y[d], x[d]);
  }
}

KvLayout SmallLayout() {
  KvLayout layout;
  layout.num_layers = 2;
  layout.num_kv_heads = 1;
  layout.head_dim = 4;
  return layout;
}

TEST(Layer0TableTest, SerializeParseRoundTrip) {
  std::vector<uint16_t> k(3 * 4), v(3 * 4);
  for (size_t i = 0; i < k.size(); ++i) {
    k[i] = static_cast<uint16_t>(i);
    v[i] = static_cast<uint16_t>(100 + i);
  }
  const std::string blob = Layer0Table::Serialize(3, 1, 4, k, v);
  absl::StatusOr<Layer0Table> table = Layer0Table::Parse(blob, SmallLayout());
  ASSERT_TRUE(table.ok()) << table.status();
  EXPECT_EQ(table->vocab(), 3u);
  EXPECT_EQ(table->Row(0, 2, 0)[1], 9);
  EXPECT_EQ(table->Row(1, 1, 0)[3], 107);
  // Truncated, wrong magic, wrong shape.
  EXPECT_FALSE(
      Layer0Table::Parse(blob.substr(0, blob.size() - 1), SmallLayout()).ok());
  EXPECT_FALSE(Layer0Table::Parse("x" + blob.substr(1), SmallLayout()).ok());
  KvLayout other = SmallLayout();
  other.head_dim = 8;
  EXPECT_FALSE(Layer0Table::Parse(blob, other).ok());
}

TEST(FidelityProfileTest, ParsesAndRejects) {
  const KvLayout layout = SmallLayout();
  absl::StatusOr<FidelityProfile> profile = ParseFidelityProfile(
      R"({"model": "m", "metric": "kl_per_rel_mse", "groups": [
          {"layer": 0, "tensor": "k", "sensitivity": 0.0123},
          {"layer": 1, "tensor": "v", "sensitivity": 0.5}]})",
      &layout);
  ASSERT_TRUE(profile.ok()) << profile.status();
  EXPECT_EQ(profile->model, "m");
  EXPECT_DOUBLE_EQ(*profile->Sensitivity(0, 0), 0.0123);
  EXPECT_DOUBLE_EQ(*profile->Sensitivity(1, 1), 0.5);
  EXPECT_FALSE(profile->Sensitivity(1, 0).has_value());
  EXPECT_TRUE(profile->Find(0, 0)->channel_weights.empty());
  for (
      const char* bad :
      {"not json", R"({"groups": []})",
       R"({"metric": "mse", "groups": [{"layer": 0, "tensor": "k", "sensitivity": 1}]})",
       R"({"groups": [{"layer": 2, "tensor": "k", "sensitivity": 1}]})",
       R"({"groups": [{"layer": 0, "tensor": "q", "sensitivity": 1}]})",
       R"({"groups": [{"layer": 0, "tensor": "k", "sensitivity": -1}]})",
       R"({"groups": [{"layer": 0, "tensor": "k"}]})",
       R"({"groups": [{"layer": 0, "tensor": "k", "sensitivity": 1},
                          {"layer": 0, "tensor": "k", "sensitivity": 2}]})"}) {
    EXPECT_EQ(ParseFidelityProfile(bad, &layout).status().code(),
              absl::StatusCode::kInvalidArgument)
        << bad;
  }
}

// Channel weights: one positive number per channel of the layout's group.
TEST(FidelityProfileTest, ChannelWeights) {
  const KvLayout layout = SmallLayout();
  const size_t channels = size_t{layout.num_kv_heads} * layout.head_dim;
  auto profile_with = [](const std::string& weights) {
    return absl::StrCat(
        R"({"groups": [{"layer": 0, "tensor": "v", "sensitivity": 1, )",
        R"("channel_weights": )", weights, "}]}");
  };
  auto list = [](size_t n, const std::string& value) {
    std::vector<std::string> items(n, value);
    return absl::StrCat("[", absl::StrJoin(items, ","), "]");
  };
  absl::StatusOr<FidelityProfile> profile =
      ParseFidelityProfile(profile_with(list(channels, "0.5")), &layout);
  ASSERT_TRUE(profile.ok()) << profile.status();
  ASSERT_EQ(profile->Find(0, 1)->channel_weights.size(), channels);
  EXPECT_EQ(profile->Find(0, 1)->channel_weights[3], 0.5);
  for (const std::string& bad :
       {list(channels - 1, "1"), list(channels + 1, "1"), list(channels, "0"),
        list(channels, "-1"), list(channels, "\"x\""), std::string("3")}) {
    EXPECT_EQ(ParseFidelityProfile(profile_with(bad), &layout).status().code(),
              absl::StatusCode::kInvalidArgument)
        << bad;
  }
}

// The measured budget -> KL map: parsed, checked, and inverted in log-log.
TEST(FidelityProfileTest, KlMapInvertsMeasuredBudgets) {
  const KvLayout layout = SmallLayout();
  auto with_map = [](const std::string& map) {
    return absl::StrCat(
        R"({"groups": [{"layer": 0, "tensor": "k", "sensitivity": 1}], )",
        R"("kl_map": )", map, "}");
  };
  absl::StatusOr<FidelityProfile> profile =
      ParseFidelityProfile(with_map(R"([{"budget": 0.001, "kl": 0.0005},
                   {"budget": 0.004, "kl": 0.001},
                   {"budget": 0.016, "kl": 0.002}])"),
                           &layout);
  ASSERT_TRUE(profile.ok()) << profile.status();
  ASSERT_EQ(profile->kl_map.size(), 3u);
  // On the points, between them (log-log) and past the ends (the end
  // segments' slope, at most 4x past the last budget).
  EXPECT_NEAR(profile->BudgetForKl(0.001), 0.004, 1e-12);
  EXPECT_NEAR(profile->BudgetForKl(0.0005), 0.001, 1e-12);
  EXPECT_NEAR(profile->BudgetForKl(std::sqrt(0.0005 * 0.001)), 0.002, 1e-12);
  EXPECT_NEAR(profile->BudgetForKl(0.004), 0.064, 1e-12);
  EXPECT_NEAR(profile->BudgetForKl(0.1), 0.064, 1e-12);
  EXPECT_NEAR(profile->BudgetForKl(0.00025), 0.00025, 1e-12);
  // Without a map the budget is the KL asked for.
  absl::StatusOr<FidelityProfile> plain =
      ParseFidelityProfile(with_map("[]"), &layout);
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(plain->BudgetForKl(0.003), 0.003);
  for (const char* bad :
       {"3", R"([{"budget": 0.001}])", R"([{"budget": 0, "kl": 0.1}])",
        R"([{"budget": 0.002, "kl": 0.1}, {"budget": 0.001, "kl": 0.2}])",
        R"([{"budget": "x", "kl": 0.1}])"}) {
    EXPECT_EQ(ParseFidelityProfile(with_map(bad), &layout).status().code(),
              absl::StatusCode::kInvalidArgument)
        << bad;
  }
}

}  // namespace
}  // namespace seqkv
