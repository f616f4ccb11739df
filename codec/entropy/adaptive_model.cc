#include "codec/entropy/adaptive_model.h"

#include <algorithm>

namespace seqkv::entropy {

AdaptiveFrequencyModel::AdaptiveFrequencyModel(uint32_t num_symbols,
                                               uint32_t increment,
                                               uint32_t max_total)
    : num_symbols_(std::clamp<uint32_t>(num_symbols, 1, kMaxSymbols)) {
  max_total_ = std::clamp<uint32_t>(max_total, 2 * num_symbols_, kMaxTotal);
  increment_ = std::clamp<uint32_t>(increment, 1, max_total_ / 4);
  while (top_bit_ * 2 <= num_symbols_) top_bit_ *= 2;
  counts_.assign(num_symbols_, 1);
  Rescale();
}

void AdaptiveFrequencyModel::Rescale() {
  // Halving is skipped on construction (counts are all 1 and total is small).
  if (total_ != 0)
    for (uint32_t& count : counts_) count = (count + 1) >> 1;
  tree_.assign(num_symbols_ + 1, 0);
  total_ = 0;
  for (uint32_t i = 0; i < num_symbols_; ++i) {
    total_ += counts_[i];
    // O(n) Fenwick build: add each node into its parent.
    tree_[i + 1] += counts_[i];
    uint32_t parent = (i + 1) + ((i + 1) & -(i + 1));
    if (parent <= num_symbols_) tree_[parent] += tree_[i + 1];
  }
}

void AdaptiveFrequencyModel::Lookup(uint32_t symbol, uint32_t& cum,
                                    uint32_t& freq) const {
  uint32_t sum = 0;
  for (uint32_t i = symbol; i > 0; i &= i - 1) sum += tree_[i];
  cum = sum;
  freq = counts_[symbol];
}

uint32_t AdaptiveFrequencyModel::Find(uint32_t target, uint32_t& cum,
                                      uint32_t& freq) const {
  // Descend the Fenwick tree to the last prefix whose sum is <= target.
  uint32_t position = 0;
  uint32_t sum = 0;
  for (uint32_t step = top_bit_; step > 0; step >>= 1) {
    uint32_t next = position + step;
    if (next <= num_symbols_ && sum + tree_[next] <= target) {
      position = next;
      sum += tree_[next];
    }
  }
  // position symbols lie entirely at or below target; a target >= total
  // (impossible for a valid stream) lands past the end and is clamped.
  if (position >= num_symbols_) {
    position = num_symbols_ - 1;
    Lookup(position, cum, freq);
    return position;
  }
  cum = sum;
  freq = counts_[position];
  return position;
}

void AdaptiveFrequencyModel::Update(uint32_t symbol) {
  counts_[symbol] += increment_;
  total_ += increment_;
  if (total_ > max_total_) {
    Rescale();
    return;
  }
  for (uint32_t i = symbol + 1; i <= num_symbols_; i += i & -i)
    tree_[i] += increment_;
}

}  // namespace seqkv::entropy
