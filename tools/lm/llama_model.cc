#include "tools/lm/llama_model.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <span>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "model/bf16_ops.h"

namespace seqkv::lm {
namespace {

// y[rows][out] = bf16(x[rows][in] * w[out][in]^T): bf16 inputs, fp32
// accumulation, one rounding of the result, as a bf16 GEMM does.
void Linear(const float* x, int rows, int in, const std::vector<float>& w,
            int out, float* y) {
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, out, in, 1.0f, x,
              in, w.data(), in, 0.0f, y, out);
  RoundBf16InPlace({y, size_t(rows) * out});
}

// HF LlamaRMSNorm of each row (model/bf16_ops.h).
void RmsNorm(const float* x, int rows, int dim,
             const std::vector<float>& weight, float eps, float* out) {
  for (int r = 0; r < rows; ++r)
    RmsNormBf16({x + size_t(r) * dim, size_t(dim)}, weight, eps,
                {out + size_t(r) * dim, size_t(dim)});
}

struct RopeTable {
  std::vector<float> cos;  // [half], bf16 values
  std::vector<float> sin;
};

RopeTable RopeAt(std::span<const float> inv_freq, uint64_t position) {
  RopeTable table;
  table.cos.resize(inv_freq.size());
  table.sin.resize(inv_freq.size());
  const float p = static_cast<float>(position);
  for (size_t i = 0; i < inv_freq.size(); ++i) {
    const float angle = inv_freq[i] * p;
    table.cos[i] = RoundBf16(std::cos(angle));
    table.sin[i] = RoundBf16(std::sin(angle));
  }
  return table;
}

// x * cos + rotate(x) * sin with every product and the sum in bf16.
void ApplyRope(RopeStyle style, const RopeTable& table, float* x, int dim) {
  const int half = dim / 2;
  if (style == RopeStyle::kInterleaved) {
    for (int i = 0; i < half; ++i) {
      const float a = x[2 * i], b = x[2 * i + 1];
      const float c = table.cos[i], s = table.sin[i];
      x[2 * i] = RoundBf16(RoundBf16(a * c) + RoundBf16(-b * s));
      x[2 * i + 1] = RoundBf16(RoundBf16(b * c) + RoundBf16(a * s));
    }
    return;
  }
  for (int i = 0; i < half; ++i) {
    const float a = x[i], b = x[i + half];
    const float c = table.cos[i], s = table.sin[i];
    x[i] = RoundBf16(RoundBf16(a * c) + RoundBf16(-b * s));
    x[i + half] = RoundBf16(RoundBf16(b * c) + RoundBf16(a * s));
  }
}

// Turns one row of raw scores into unnormalized probabilities in place and
// returns their fp32 sum. Positions from `visible` on are masked (causal).
// Like fused attention kernels, the probabilities fed to the product with V
// are rounded to bf16 while the normalizer is summed in fp32; that matches
// the reference caches better than an fp32 softmax does.
float Softmax(float* scores, int visible, int total, float scale) {
  float max = -std::numeric_limits<float>::infinity();
  for (int j = 0; j < visible; ++j) max = std::max(max, scores[j]);
  float sum = 0;
  for (int j = 0; j < visible; ++j) {
    const float p = std::exp((scores[j] - max) * scale);
    sum += p;
    scores[j] = RoundBf16(p);
  }
  std::fill(scores + visible, scores + total, 0.0f);
  return sum;
}

// Indices of the two channels RoPE rotates together by pair i.
std::pair<int, int> RopePair(RopeStyle style, int i, int dim) {
  if (style == RopeStyle::kInterleaved) return {2 * i, 2 * i + 1};
  return {i, i + dim / 2};
}

// Adds one query head's share to `sensitivity` (see AttentionSensitivity):
// `probs` holds its n rows of unnormalized attention over `total` positions
// (normalizers in row_sum), `out` its unnormalized outputs, `values` the
// values of every position, `query` its post-RoPE queries (row stride
// `query_stride`). Keys of the cache are the first `past` positions.
struct HeadSensitivityInput {
  const float* probs;
  const float* row_sum;
  const float* out;
  const float* values;
  const float* query;
  int query_stride;
  int rows, past, total, dim;
};
void AddHeadSensitivity(const HeadSensitivityInput& in, RopeStyle style,
                        std::span<const float> inv_freq,
                        std::span<const double> out_column_norms,
                        double* key_sum, double* value_sum) {
  const int dim = in.dim, half = dim / 2;
  // cos and sin of every cache position's rotation, per pair.
  std::vector<double> cos(size_t(in.past) * half), sin(cos.size());
  for (int j = 0; j < in.past; ++j)
    for (int i = 0; i < half; ++i) {
      const double angle = double(inv_freq[i]) * j;
      cos[size_t(j) * half + i] = std::cos(angle);
      sin[size_t(j) * half + i] = std::sin(angle);
    }
  double head_norm = 0;
  for (double norm : out_column_norms) head_norm += norm;
  std::vector<double> output(dim);
  for (int m = 0; m < in.rows; ++m) {
    const double norm = 1.0 / in.row_sum[m];
    for (int d = 0; d < dim; ++d)
      output[d] = in.out[size_t(m) * dim + d] * norm;
    const float* q = in.query + size_t(m) * in.query_stride;
    double squared_probs = 0;
    for (int j = 0; j < in.past; ++j) {
      const double a = in.probs[size_t(m) * in.total + j] * norm;
      const double a2 = a * a;
      squared_probs += a2;
      if (a2 == 0) continue;
      const float* v = in.values + size_t(j) * dim;
      double spread = 0;
      for (int d = 0; d < dim; ++d) {
        const double diff = v[d] - output[d];
        spread += diff * diff;
      }
      const double weight = a2 * spread * head_norm / dim;
      for (int i = 0; i < half; ++i) {
        const auto [x, y] = RopePair(style, i, dim);
        const double c = cos[size_t(j) * half + i],
                     s = sin[size_t(j) * half + i];
        // R(j)^T q: the query in the key's pre-RoPE frame.
        const double qx = q[x] * c + q[y] * s, qy = q[y] * c - q[x] * s;
        key_sum[x] += weight * qx * qx;
        key_sum[y] += weight * qy * qy;
      }
    }
    for (int d = 0; d < dim; ++d)
      value_sum[d] += squared_probs * out_column_norms[d];
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<LlamaModel>> LlamaModel::Load(
    const std::string& model_dir) {
  auto config = LoadLmConfig(model_dir);
  if (!config.ok()) return config.status();
  auto weights = LoadLmWeights(model_dir, *config);
  if (!weights.ok()) return weights.status();
  return std::make_unique<LlamaModel>(*std::move(config), *std::move(weights));
}

LlamaModel::LlamaModel(LmConfig config, LmWeights weights)
    : config_(std::move(config)), weights_(std::move(weights)) {
  const uint32_t half = config_.head_dim / 2;
  inv_freq_.resize(half);
  const float base = static_cast<float>(config_.rope.theta);
  for (uint32_t i = 0; i < half; ++i)
    inv_freq_[i] =
        1.0f / std::pow(base, float(2 * i) / float(config_.head_dim));
}

KvCache LlamaModel::EmptyCache() const {
  KvCache cache;
  cache.layout = kv_layout();
  return cache;
}

absl::StatusOr<ForwardResult> LlamaModel::Forward(
    std::span<const int32_t> tokens, KvCache& cache, bool last_only,
    AttentionSensitivity* sensitivity) const {
  const KvLayout layout = kv_layout();
  if (cache.layout.num_layers != layout.num_layers ||
      cache.layout.num_kv_heads != layout.num_kv_heads ||
      cache.layout.head_dim != layout.head_dim ||
      cache.layout.dtype != layout.dtype || cache.layout.latent)
    return absl::InvalidArgumentError(
        absl::StrCat("cache layout ", cache.layout.DebugString(),
                     " does not match the model's ", layout.DebugString()));
  if (cache.num_tokens() > 0 || !cache.k.empty())
    if (auto status = cache.Validate(); !status.ok()) return status;
  if (tokens.empty())
    return absl::InvalidArgumentError("forward: no tokens to run");
  for (int32_t token : tokens)
    if (token < 0 || uint32_t(token) >= config_.vocab_size)
      return absl::InvalidArgumentError(
          absl::StrCat("forward: token id ", token,
                       " outside the vocabulary of ", config_.vocab_size));

  const int n = static_cast<int>(tokens.size());
  const int past = static_cast<int>(cache.num_tokens());
  const int total = past + n;
  const int hidden = config_.hidden_size;
  const int heads = config_.num_heads;
  const int kv_heads = config_.num_kv_heads;
  const int dim = config_.head_dim;
  const int q_width = heads * dim;
  const int kv_width = kv_heads * dim;
  const int inter = config_.intermediate_size;
  const int group = heads / kv_heads;
  const float eps = static_cast<float>(config_.rms_norm_eps);
  const float scale = 1.0f / std::sqrt(float(dim));

  std::vector<float> x(size_t(n) * hidden);
  for (int i = 0; i < n; ++i)
    std::memcpy(&x[size_t(i) * hidden],
                &weights_.embed[size_t(tokens[i]) * hidden],
                sizeof(float) * hidden);

  std::vector<RopeTable> rope(n);
  for (int i = 0; i < n; ++i) rope[i] = RopeAt(inv_freq_, uint64_t(past + i));

  // The extended cache, [layer][kv_head][token][dim] bf16.
  const size_t row_bytes = size_t(dim) * 2;
  std::vector<std::byte> new_k(size_t(config_.num_layers) * kv_heads * total *
                               row_bytes);
  std::vector<std::byte> new_v(new_k.size());

  std::vector<float> xn(size_t(n) * hidden), q(size_t(n) * q_width),
      k(size_t(n) * kv_width), v(size_t(n) * kv_width),
      attn(size_t(n) * q_width), proj(size_t(n) * hidden),
      gate(size_t(n) * inter), up(size_t(n) * inter);
  std::vector<float> layer_k(size_t(total) * dim), layer_v(size_t(total) * dim);
  std::vector<float> scores(size_t(n) * total), head_out(size_t(n) * dim);
  std::vector<float> row_sum(n);
  std::vector<double> out_column_norms;  // [q_width], for `sensitivity`
  if (sensitivity != nullptr) {
    const size_t size = size_t(config_.num_layers) * kv_heads * dim;
    if (sensitivity->key.empty()) sensitivity->key.assign(size, 0.0);
    if (sensitivity->value.empty()) sensitivity->value.assign(size, 0.0);
    if (sensitivity->key.size() != size || sensitivity->value.size() != size)
      return absl::InvalidArgumentError(
          "forward: attention sensitivity of another model's shape");
  }

  for (uint32_t l = 0; l < config_.num_layers; ++l) {
    const LayerWeights& w = weights_.layers[l];
    if (sensitivity != nullptr) {
      out_column_norms.assign(q_width, 0.0);
      for (int r = 0; r < hidden; ++r)
        for (int c = 0; c < q_width; ++c) {
          const double weight = w.o_proj[size_t(r) * q_width + c];
          out_column_norms[c] += weight * weight;
        }
    }
    RmsNorm(x.data(), n, hidden, w.input_norm, eps, xn.data());
    Linear(xn.data(), n, hidden, w.q_proj, q_width, q.data());
    Linear(xn.data(), n, hidden, w.k_proj, kv_width, k.data());
    Linear(xn.data(), n, hidden, w.v_proj, kv_width, v.data());
    for (int i = 0; i < n; ++i) {
      for (int h = 0; h < heads; ++h)
        ApplyRope(config_.rope.style, rope[i],
                  &q[size_t(i) * q_width + h * dim], dim);
      for (int h = 0; h < kv_heads; ++h)
        ApplyRope(config_.rope.style, rope[i],
                  &k[size_t(i) * kv_width + h * dim], dim);
    }

    for (int g = 0; g < kv_heads; ++g) {
      // Gather this KV head's keys and values over all positions.
      const size_t old_offset = (size_t(l) * kv_heads + g) * past * row_bytes;
      const size_t new_offset = (size_t(l) * kv_heads + g) * total * row_bytes;
      if (past > 0) {
        Bf16BytesToFloats(cache.k.data() + old_offset,
                          {layer_k.data(), size_t(past) * dim});
        Bf16BytesToFloats(cache.v.data() + old_offset,
                          {layer_v.data(), size_t(past) * dim});
      }
      for (int i = 0; i < n; ++i) {
        std::memcpy(&layer_k[size_t(past + i) * dim],
                    &k[size_t(i) * kv_width + g * dim], sizeof(float) * dim);
        std::memcpy(&layer_v[size_t(past + i) * dim],
                    &v[size_t(i) * kv_width + g * dim], sizeof(float) * dim);
      }
      FloatsToBf16Bytes(layer_k, new_k.data() + new_offset);
      FloatsToBf16Bytes(layer_v, new_v.data() + new_offset);

      for (int h = g * group; h < (g + 1) * group; ++h) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, total, dim,
                    1.0f, &q[h * dim], q_width, layer_k.data(), dim, 0.0f,
                    scores.data(), total);
        for (int i = 0; i < n; ++i)
          row_sum[i] =
              Softmax(&scores[size_t(i) * total], past + i + 1, total, scale);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, dim, total,
                    1.0f, scores.data(), total, layer_v.data(), dim, 0.0f,
                    head_out.data(), dim);
        for (int i = 0; i < n; ++i)
          for (int d = 0; d < dim; ++d)
            attn[size_t(i) * q_width + h * dim + d] =
                RoundBf16(head_out[size_t(i) * dim + d] / row_sum[i]);
        if (sensitivity != nullptr && past > 0) {
          const size_t base = (size_t(l) * kv_heads + g) * dim;
          AddHeadSensitivity(
              {.probs = scores.data(),
               .row_sum = row_sum.data(),
               .out = head_out.data(),
               .values = layer_v.data(),
               .query = &q[h * dim],
               .query_stride = q_width,
               .rows = n,
               .past = past,
               .total = total,
               .dim = dim},
              config_.rope.style, inv_freq_,
              std::span<const double>(out_column_norms).subspan(h * dim, dim),
              &sensitivity->key[base], &sensitivity->value[base]);
        }
      }
    }
    Linear(attn.data(), n, q_width, w.o_proj, hidden, proj.data());
    for (size_t i = 0; i < x.size(); ++i) x[i] = RoundBf16(x[i] + proj[i]);

    RmsNorm(x.data(), n, hidden, w.post_norm, eps, xn.data());
    Linear(xn.data(), n, hidden, w.gate_proj, inter, gate.data());
    Linear(xn.data(), n, hidden, w.up_proj, inter, up.data());
    for (size_t i = 0; i < gate.size(); ++i) {
      const float g = gate[i];
      const float silu = RoundBf16(g / (1.0f + std::exp(-g)));
      gate[i] = RoundBf16(silu * up[i]);
    }
    Linear(gate.data(), n, inter, w.down_proj, hidden, proj.data());
    for (size_t i = 0; i < x.size(); ++i) x[i] = RoundBf16(x[i] + proj[i]);
  }

  ForwardResult result;
  const int first_row = last_only ? n - 1 : 0;
  result.rows = n - first_row;
  result.vocab = config_.vocab_size;
  RmsNorm(&x[size_t(first_row) * hidden], result.rows, hidden,
          weights_.final_norm, eps, xn.data());
  result.logits.resize(size_t(result.rows) * result.vocab);
  Linear(xn.data(), result.rows, hidden, weights_.output_embedding(),
         result.vocab, result.logits.data());

  cache.layout = layout;
  cache.tokens.insert(cache.tokens.end(), tokens.begin(), tokens.end());
  cache.k = std::move(new_k);
  cache.v = std::move(new_v);
  return result;
}

absl::StatusOr<ForwardResult> LlamaModel::Prefill(
    std::span<const int32_t> tokens, KvCache& cache) const {
  if (tokens.empty())
    return absl::InvalidArgumentError("prefill: no tokens to run");
  if (tokens.size() > 1) {
    auto head = Forward(tokens.first(tokens.size() - 1), cache,
                        /*last_only=*/true);
    if (!head.ok()) return head.status();
  }
  return Forward(tokens.last(1), cache, /*last_only=*/true);
}

absl::StatusOr<std::vector<int32_t>> LlamaModel::DecodeGreedy(
    std::span<const float> logits, KvCache& cache,
    uint32_t max_new_tokens) const {
  std::vector<int32_t> generated;
  if (max_new_tokens == 0) return generated;
  generated.push_back(ArgMax(logits));
  while (generated.size() < max_new_tokens) {
    const int32_t last = generated.back();
    auto result = Forward({&last, 1}, cache, /*last_only=*/true);
    if (!result.ok()) return result.status();
    generated.push_back(ArgMax(result->row(0)));
  }
  return generated;
}

absl::StatusOr<std::vector<int32_t>> LlamaModel::GenerateGreedy(
    std::span<const int32_t> tokens, KvCache& cache,
    uint32_t max_new_tokens) const {
  auto first = Prefill(tokens, cache);
  if (!first.ok()) return first.status();
  return DecodeGreedy(first->row(0), cache, max_new_tokens);
}

std::vector<float> LogSoftmax(std::span<const float> logits) {
  float max = -std::numeric_limits<float>::infinity();
  for (float value : logits) max = std::max(max, value);
  double sum = 0;
  for (float value : logits) sum += std::exp(double(value) - max);
  const float log_sum = static_cast<float>(std::log(sum)) + max;
  std::vector<float> out(logits.size());
  for (size_t i = 0; i < logits.size(); ++i) out[i] = logits[i] - log_sum;
  return out;
}

int32_t ArgMax(std::span<const float> logits) {
  return static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) -
                              logits.begin());
}

}  // namespace seqkv::lm
