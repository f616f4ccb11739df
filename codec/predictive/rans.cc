#include "codec/predictive/rans.h"

#include <algorithm>

namespace seqkv::predictive {

void NormalizeFrequencies(std::span<const uint32_t> counts,
                          std::span<uint16_t> freqs) {
  uint64_t total = 0;
  int largest = 0;
  int num_used = 0;
  for (int s = 0; s < kAlphabetSize; ++s) {
    total += counts[s];
    if (counts[s] > counts[largest]) largest = s;
    if (counts[s] > 0) ++num_used;
  }
  std::fill(freqs.begin(), freqs.begin() + kAlphabetSize, 0);
  if (total == 0) {
    freqs[0] = kProbScale / 2;
    freqs[1] = kProbScale / 2;
    return;
  }
  if (num_used == 1) {
    // A lone symbol may not take the whole range (entries pack freq in 12
    // bits), so a neighbour gets the smallest possible share.
    freqs[largest] = kProbScale - 1;
    freqs[largest == 0 ? 1 : largest - 1] = 1;
    return;
  }
  int64_t sum = 0;
  for (int s = 0; s < kAlphabetSize; ++s) {
    if (counts[s] == 0) continue;
    uint64_t scaled = (uint64_t{counts[s]} * kProbScale + total / 2) / total;
    freqs[s] =
        static_cast<uint16_t>(std::clamp<uint64_t>(scaled, 1, kProbScale - 1));
    sum += freqs[s];
  }
  // Fix the rounding drift on the symbols that can best afford it: the
  // relative change of a large frequency costs the fewest bits.
  while (sum != kProbScale) {
    int best = -1;
    for (int s = 0; s < kAlphabetSize; ++s) {
      if (sum > kProbScale ? freqs[s] <= 1
                           : freqs[s] == 0 || freqs[s] >= kProbScale - 1)
        continue;
      if (best < 0 || freqs[s] > freqs[best]) best = s;
    }
    const int64_t room =
        sum > kProbScale ? freqs[best] - 1 : kProbScale - 1 - freqs[best];
    const int64_t step = std::min<int64_t>(
        room, std::max<int64_t>(1, std::abs(sum - int64_t{kProbScale}) / 2));
    if (sum > kProbScale) {
      freqs[best] -= step;
      sum -= step;
    } else {
      freqs[best] += step;
      sum += step;
    }
  }
}

void BuildEncodeTable(std::span<const uint16_t> freqs, EncodeTable& table) {
  uint32_t start = 0;
  for (int s = 0; s < kAlphabetSize; ++s) {
    const uint32_t freq = freqs[s];
    EncodeSymbol& e = table[s];
    e.bias = start;
    start += freq;
    if (freq == 0) {
      e = EncodeSymbol();  // never coded
      continue;
    }
    e.reciprocal = ((uint64_t{1} << 43) + freq - 1) / freq;
    e.x_max = ((kRansLow >> kProbBits) << 16) * freq;
    e.complement = kProbScale - freq;
  }
}

bool BuildDecodeTable(std::span<const uint16_t> freqs, uint32_t* entries) {
  uint32_t slot = 0;
  for (int s = 0; s < kAlphabetSize; ++s) {
    const uint32_t f = freqs[s];
    if (f >= kProbScale || slot + f > kProbScale) return false;
    const uint32_t base = uint32_t(s) << 24 | f << 12;
    for (uint32_t i = 0; i < f; ++i) entries[slot + i] = base | i;
    slot += f;
  }
  return slot == kProbScale;
}

void RansEncoder::Finish(std::string& out) {
  std::reverse(&words_[kHead], &words_[tail_]);
  // The decoder reads state 0 first, each as high word then low word.
  for (int i = 0; i < kNumStates; ++i) {
    words_[2 * i] = static_cast<uint16_t>(states_[i] >> 16);
    words_[2 * i + 1] = static_cast<uint16_t>(states_[i]);
  }
  out.append(reinterpret_cast<const char*>(words_), tail_ * sizeof(uint16_t));
}

RansDecoder::RansDecoder(std::span<const std::byte> bytes)
    : next_(bytes.data()),
      end_(bytes.data() + (bytes.size() & ~size_t{1})),
      odd_(bytes.size() & 1) {
  for (uint32_t& x : states_) {
    x = uint32_t{ReadWord()} << 16;
    x |= ReadWord();
  }
}

void RansDecoder::GetSymbols(const uint32_t* entries, const uint32_t* table_of,
                             uint32_t n, uint8_t* out) {
  size_t position = position_;
  position_ += n;
  // Each symbol reads at most one word, so with n words left no read can
  // pass the end and the checks (and branches) go away. Whole rounds of the
  // states go in two passes: every state steps (independent work the CPU
  // overlaps), then the refills, in state order as the stream has them.
  uint32_t d = 0;
  if (words_left() >= n && position % kNumStates == 0) {
    // Local copies: stores through `out` could alias the members.
    std::array<uint32_t, kNumStates> x = states_;
    const std::byte* p = next_;
    for (; d + kNumStates <= n; d += kNumStates) {
      for (int i = 0; i < kNumStates; ++i) {
        const uint32_t e = entries[table_of[d + i] + (x[i] & (kProbScale - 1))];
        x[i] = ((e >> 12) & 0xFFF) * (x[i] >> kProbBits) + (e & 0xFFF);
        out[d + i] = static_cast<uint8_t>(e >> 24);
      }
      for (int i = 0; i < kNumStates; ++i) {
        uint16_t word;
        std::memcpy(&word, p, sizeof(word));
        const bool refill = x[i] < kRansLow;
        x[i] = refill ? (x[i] << 16) | word : x[i];
        p += refill ? sizeof(word) : 0;
      }
    }
    states_ = x;
    next_ = p;
    position += d;
  }
  for (; d < n; ++d, ++position) {
    uint32_t& x = states_[position & (kNumStates - 1)];
    const uint32_t e = entries[table_of[d] + (x & (kProbScale - 1))];
    x = ((e >> 12) & 0xFFF) * (x >> kProbBits) + (e & 0xFFF);
    out[d] = static_cast<uint8_t>(e >> 24);
    if (x < kRansLow) x = (x << 16) | ReadWord();
  }
}

}  // namespace seqkv::predictive
