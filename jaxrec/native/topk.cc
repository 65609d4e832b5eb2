// Exact top-k for XLA's CPU backend: over the last axis of a float32 array
// (JaxrecTopK), and fused with inner-product scoring (JaxrecScoreTopK).
//
// Order: higher score first; equal scores (with -0.0 == 0.0) go to the lower
// index. Each row is scanned once in index order, keeping the k best seen so
// far in a heap whose root is the worst of them. A later element has a higher
// index, so it enters only when its score is strictly above the root's; most
// of a row is therefore skipped 16 floats at a time by one vectorised compare
// against that threshold. NaN never compares above anything, so it never
// enters after the first k (callers detect NaN rows separately).
//
// The fused kernel never writes the [B, I] scores: a register-blocked tile
// of kRows users x 32 items is computed from a user tile in L1 and an item
// panel in L2 into a 1.5 KiB buffer, each user's 32 scores are compared
// against that user's threshold with two vector compares, and only the rare
// score above it is looked at again. On a 2-core AVX-512 VM the tile loop
// runs at XLA's own matmul rate; the top-k bookkeeping adds about 10 %.

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

// Eight floats; GCC/Clang vector extensions compile to the widest SIMD the
// target has (-march=native), or to pairs of SSE/NEON registers.
typedef float Floats8 __attribute__((vector_size(32)));
typedef int32_t Mask8 __attribute__((vector_size(32)));

struct Entry {
  float score;
  int32_t index;
};

// True when a ranks below b: lower score, or equal score and higher index.
inline bool Worse(const Entry& a, const Entry& b) {
  return a.score < b.score || (a.score == b.score && a.index > b.index);
}

// Restores the heap (root = worst) after heap[pos] got better.
void SiftDown(Entry* heap, int64_t k, int64_t pos) {
  Entry item = heap[pos];
  while (true) {
    int64_t child = 2 * pos + 1;
    if (child >= k) break;
    if (child + 1 < k && Worse(heap[child + 1], heap[child])) ++child;
    if (!Worse(heap[child], item)) break;
    heap[pos] = heap[child];
    pos = child;
  }
  heap[pos] = item;
}

void TopKRow(const float* x, int64_t n, int64_t k, Entry* heap,
             float* values, int32_t* indices) {
  for (int64_t j = 0; j < k; ++j) heap[j] = {x[j], static_cast<int32_t>(j)};
  for (int64_t j = k / 2 - 1; j >= 0; --j) SiftDown(heap, k, j);
  float threshold = heap[0].score;
  constexpr int64_t kBlock = 16;
  int64_t j = k;
  auto offer = [&](int64_t i) {
    if (x[i] > threshold) {
      heap[0] = {x[i], static_cast<int32_t>(i)};
      SiftDown(heap, k, 0);
      threshold = heap[0].score;
    }
  };
  for (; j + kBlock <= n; j += kBlock) {
    Floats8 lo, hi;
    std::memcpy(&lo, x + j, sizeof lo);
    std::memcpy(&hi, x + j + 8, sizeof hi);
    const Floats8 t = threshold - Floats8{};  // broadcast
    const Mask8 above = (lo > t) | (hi > t);
    uint64_t words[4];
    std::memcpy(words, &above, sizeof words);
    if (words[0] | words[1] | words[2] | words[3]) {
      for (int64_t t = 0; t < kBlock; ++t) offer(j + t);
    }
  }
  for (; j < n; ++j) offer(j);
  std::sort(heap, heap + k,
            [](const Entry& a, const Entry& b) { return Worse(b, a); });
  for (int64_t i = 0; i < k; ++i) {
    values[i] = heap[i].score;
    indices[i] = heap[i].index;
  }
}

ffi::Error TopKImpl(ffi::Buffer<ffi::F32> scores,
                    ffi::ResultBuffer<ffi::F32> values,
                    ffi::ResultBuffer<ffi::S32> indices, int64_t k) {
  auto dims = scores.dimensions();
  if (dims.size() == 0) {
    return ffi::Error::InvalidArgument("top_k needs at least one axis");
  }
  const int64_t n = dims.back();
  if (k < 1 || k > n) {
    return ffi::Error::InvalidArgument("top_k needs 1 <= k <= last axis");
  }
  if (n >= (int64_t{1} << 31)) {
    return ffi::Error::InvalidArgument("top_k: last axis exceeds int32");
  }
  const int64_t rows = scores.element_count() / n;
  const float* x = scores.typed_data();
  float* v = values->typed_data();
  int32_t* ix = indices->typed_data();
  Entry small[64];
  Entry* heap = k <= 64 ? small : new Entry[k];
  for (int64_t r = 0; r < rows; ++r) {
    TopKRow(x + r * n, n, k, heap, v + r * k, ix + r * k);
  }
  if (heap != small) delete[] heap;
  return ffi::Error::Success();
}


// ---------------------------------------------------------------- fused ---

// Items per packed panel: the packed item matrix is float32[P, d, kPanel],
// panel p holding items p*kPanel .. p*kPanel+kPanel-1 (zero rows past the
// end), so one k step of a tile reads kPanel contiguous floats.
constexpr int64_t kPanel = 32;

#if defined(__AVX512F__)
constexpr int kLanes = 16;
constexpr int kRows = 12;  // 24 accumulators of the 32 zmm registers
#elif defined(__AVX2__) || defined(__AVX__)
constexpr int kLanes = 8;
constexpr int kRows = 3;  // 12 accumulators of the 16 ymm registers
#elif defined(__aarch64__)
constexpr int kLanes = 4;
constexpr int kRows = 3;  // 24 accumulators of the 32 q registers
#else
constexpr int kLanes = 4;
constexpr int kRows = 1;
#endif
constexpr int kVecs = kPanel / kLanes;

typedef float VecF __attribute__((vector_size(kLanes * 4)));
typedef int32_t VecI __attribute__((vector_size(kLanes * 4)));

// Panels per item block: 32 x 32 items x d=128 floats = 512 KiB, which stays
// in L2 while every user tile of the chunk passes over it.
constexpr int64_t kBlockPanels = 32;

// One user's running top-k. Scanning in index order meets about
// k * ln(n / k) scores above the running k-th best (~150 for k = 20 of 12,101
// items); a heap's sift mispredicts several branches on each, which cost a
// quarter of the scoring at d = 128. So the insertions do not branch:
//  - k <= kSorted (the usual k of 10-20): the top-k is held exactly in
//    kSorted slots sorted best first, updated by vector compares and
//    permutes (InsertSorted); the threshold is slot k - 1.
//  - larger k: candidates above the threshold are appended to a buffer of
//    k + kSlack (compress-stores on AVX-512); a full buffer is cut (Cut) to
//    entries at or above a new threshold that still leaves at least k, so
//    the threshold rises in steps.
// Either way a later item with a score equal to the threshold has at least
// k earlier items at or above it, so the strict `>` filter is exact for the
// tie rule (equal scores to the lower index).
constexpr int64_t kSorted = 32;
constexpr int64_t kSlack = 96;  // at least one panel

struct UserState {
  float* scores;  // kSorted slots, or a buffer of k + kSlack
  int32_t* items;
  int64_t count;  // buffer entries held (unused by the sorted slots)
  float threshold;  // -inf until k candidates are held
  const int32_t* excluded;  // sorted ascending
  int64_t n_excluded;
  bool nan;
};

inline bool IsExcluded(const UserState& u, int32_t item) {
  return std::binary_search(u.excluded, u.excluded + u.n_excluded, item);
}

// An int32 whose order is the float order, with -0.0 == 0.0 (not NaN).
inline int32_t OrderKey(float x) {
  x += 0.0f;  // -0.0 -> +0.0
  int32_t bits;
  std::memcpy(&bits, &x, sizeof bits);
  return bits >= 0 ? bits : bits ^ 0x7fffffff;
}

inline float FromOrderKey(int32_t key) {
  const int32_t bits = key >= 0 ? key : key ^ 0x7fffffff;
  float x;
  std::memcpy(&x, &bits, sizeof x);
  return x;
}

// #(keys[j] >= v) over `padded` keys (a multiple of 16).
inline int32_t CountAtLeast(const int32_t* keys, int32_t padded, int32_t v) {
  int32_t count = 0;
#if defined(__AVX512F__)
  const __m512i t = _mm512_set1_epi32(v);
  for (int32_t j = 0; j < padded; j += 16) {
    count += __builtin_popcount(
        _mm512_cmpge_epi32_mask(_mm512_load_si512(keys + j), t));
  }
#else
  for (int32_t j = 0; j < padded; ++j) count += keys[j] >= v;
#endif
  return count;
}

// Keeps the entries whose key is at least `kth` (in order) and, of those
// equal to it, only the earliest `ties` (all when ties < 0).
void Compact(UserState& u, const int32_t* keys, int32_t kth, int32_t ties) {
  int32_t kept = 0;
  const int32_t count = static_cast<int32_t>(u.count);
  for (int32_t j = 0; j < count; ++j) {
    const bool tie = keys[j] == kth && ties != 0;
    const bool keep = keys[j] > kth || tie;
    ties -= tie;
    u.scores[kept] = u.scores[j];
    u.items[kept] = u.items[j];
    kept += keep;
  }
  u.count = kept;
}

// Makes room in a full buffer: raises the threshold to a key t with at
// least k entries at or above it (so t is at most the k-th best, and any
// entry below it, or any later item not above it, is beaten by k earlier
// ones) and drops the entries below t. t is found by bisection over the
// keys, stopping as soon as at most k + kSlack / 2 entries remain, a few
// vectorised counts; only a tie of many equal scores at the k-th place
// needs the exact cut, which keeps the earliest of them.
void Cut(UserState& u, int64_t k) {
  const int32_t count = static_cast<int32_t>(u.count);
  const int32_t padded = (count + 15) & ~15;
  // count <= k + kSlack and k <= 1024; the padding never counts.
  alignas(64) int32_t keys[kSlack + 1024 + 16];
  int32_t hi = std::numeric_limits<int32_t>::min();
  for (int32_t j = 0; j < count; ++j) {
    keys[j] = OrderKey(u.scores[j]);
    hi = std::max(hi, keys[j]);
  }
  for (int32_t j = count; j < padded; ++j) {
    keys[j] = std::numeric_limits<int32_t>::min();
  }
  const int32_t want = static_cast<int32_t>(k);
  const int32_t enough = want + static_cast<int32_t>(kSlack / 2);
  // Invariant: #(key >= lo) >= k (every entry is above the threshold).
  int32_t lo = std::numeric_limits<int32_t>::min() + 1;
  int32_t at_lo = count;
  while (at_lo > enough && lo < hi) {
    const int32_t mid = static_cast<int32_t>(
        lo + ((static_cast<int64_t>(hi) - lo + 1) >> 1));
    const int32_t at_mid = CountAtLeast(keys, padded, mid);
    if (at_mid >= want) {
      lo = mid;
      at_lo = at_mid;
    } else {
      hi = mid - 1;
    }
  }
  if (at_lo > enough) {
    // lo is the k-th key itself, tied by many: keep exactly k.
    // (Keys are below +inf's, so lo + 1 does not overflow.)
    Compact(u, keys, lo, want - CountAtLeast(keys, padded, lo + 1));
  } else {
    Compact(u, keys, lo, -1);
  }
  u.threshold = std::max(u.threshold, FromOrderKey(lo));
}

// out[r][j] = sum_k a[r, k] * panel[k, j] for a tile of kRows users and one
// panel of kPanel items. Out of line, so that the 2 * kRows * kVecs
// accumulators get the registers to themselves (GCC spills them when this
// loop is inlined into the code around it).
__attribute__((noinline)) void TileScores(const float* a, const float* panel,
                                          int64_t d, float* out) {
  VecF acc[kRows][kVecs];
#pragma GCC unroll 16
  for (int r = 0; r < kRows; ++r)
#pragma GCC unroll 8
    for (int v = 0; v < kVecs; ++v) acc[r][v] = VecF{};
  for (int64_t k = 0; k < d; ++k) {
    VecF b[kVecs];
#pragma GCC unroll 8
    for (int v = 0; v < kVecs; ++v)
      std::memcpy(&b[v], panel + k * kPanel + v * kLanes, sizeof(VecF));
#pragma GCC unroll 16
    for (int r = 0; r < kRows; ++r) {
      const float s = a[r * d + k];
#pragma GCC unroll 8
      for (int v = 0; v < kVecs; ++v) acc[r][v] += s * b[v];
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < kRows; ++r)
#pragma GCC unroll 8
    for (int v = 0; v < kVecs; ++v)
      std::memcpy(out + r * kPanel + v * kLanes, &acc[r][v], sizeof(VecF));
}

// Bit j set when score j of one user's panel is above `threshold` or NaN:
// one unordered not-less-or-equal compare per vector. On AVX-512 the
// compares go to mask registers; elsewhere the rare row with a hit is
// rescanned in scalar code.
inline uint32_t AboveOrNaN(const float* scores, float threshold) {
#if defined(__AVX512F__)
  const __m512 t = _mm512_set1_ps(threshold);
  return uint32_t{_mm512_cmp_ps_mask(_mm512_load_ps(scores), t, _CMP_NLE_UQ)} |
         uint32_t{_mm512_cmp_ps_mask(_mm512_load_ps(scores + 16), t,
                                     _CMP_NLE_UQ)}
             << 16;
#else
  const VecF t = threshold - VecF{};
  VecI hit = VecI{};
#pragma GCC unroll 8
  for (int v = 0; v < kVecs; ++v) {
    VecF x;
    std::memcpy(&x, scores + v * kLanes, sizeof x);
    hit |= ~(x <= t);
  }
  uint64_t words[sizeof(VecI) / 8];
  std::memcpy(words, &hit, sizeof words);
  uint64_t any = 0;
  for (uint64_t w : words) any |= w;
  if (!any) return 0;
  uint32_t m = 0;
  for (int j = 0; j < kPanel; ++j)
    if (!(scores[j] <= threshold)) m |= uint32_t{1} << j;
  return m;
#endif
}

// Inserts a candidate into the kSorted slots without a branch: slots
// holding a score >= it stay (earlier items win ties), the rest move down
// one, and it takes the first of them. A candidate not above slot k - 1
// lands at a slot >= k, which is never read.
inline void InsertSorted(UserState& u, float s, int32_t item) {
#if defined(__AVX512F__)
  const __m512 sv = _mm512_set1_ps(s);
  const __m512i iv = _mm512_set1_epi32(item);
  const __m512 lo = _mm512_loadu_ps(u.scores);
  const __m512 hi = _mm512_loadu_ps(u.scores + 16);
  const __m512i ilo = _mm512_loadu_si512(u.items);
  const __m512i ihi = _mm512_loadu_si512(u.items + 16);
  // Sorted best first, so the slots to keep are a prefix.
  const __mmask16 keep_lo = _mm512_cmp_ps_mask(lo, sv, _CMP_GE_OQ);
  const __mmask16 keep_hi = _mm512_cmp_ps_mask(hi, sv, _CMP_GE_OQ);
  const __mmask16 at_lo = ~keep_lo & (keep_lo + 1);
  const __mmask16 at_hi =
      (~keep_hi & (keep_hi + 1)) & (keep_lo == 0xffff ? 0xffff : 0);
  // Lane j <- lane j - 1; lane 0 of the high half <- lane 15 of the low.
  const __m512i down = _mm512_set_epi32(14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4,
                                        3, 2, 1, 0, 0);
  const __m512i carry = _mm512_set_epi32(14, 13, 12, 11, 10, 9, 8, 7, 6, 5,
                                         4, 3, 2, 1, 0, 31);
  __m512 new_lo =
      _mm512_mask_blend_ps(keep_lo, _mm512_permutexvar_ps(down, lo), lo);
  __m512 new_hi = _mm512_mask_blend_ps(
      keep_hi, _mm512_permutex2var_ps(hi, carry, lo), hi);
  __m512i new_ilo = _mm512_mask_blend_epi32(
      keep_lo, _mm512_permutexvar_epi32(down, ilo), ilo);
  __m512i new_ihi = _mm512_mask_blend_epi32(
      keep_hi, _mm512_permutex2var_epi32(ihi, carry, ilo), ihi);
  _mm512_storeu_ps(u.scores, _mm512_mask_mov_ps(new_lo, at_lo, sv));
  _mm512_storeu_ps(u.scores + 16, _mm512_mask_mov_ps(new_hi, at_hi, sv));
  _mm512_storeu_si512(u.items, _mm512_mask_mov_epi32(new_ilo, at_lo, iv));
  _mm512_storeu_si512(u.items + 16, _mm512_mask_mov_epi32(new_ihi, at_hi, iv));
#else
  int64_t j = kSorted - 1;
  if (!(s > u.scores[j])) return;
  for (; j > 0 && !(u.scores[j - 1] >= s); --j) {
    u.scores[j] = u.scores[j - 1];
    u.items[j] = u.items[j - 1];
  }
  u.scores[j] = s;
  u.items[j] = item;
#endif
}

// Appends the scores marked in `mask` (from AboveOrNaN; padding lanes
// already cleared) of one user's panel starting at item `first`. NaN and
// excluded items are dropped here (a NaN on a ranked item sets `nan`).
inline void Append(const float* scores, uint32_t mask, int32_t first,
                   int64_t k, UserState& u) {
  if (u.n_excluded > 0) {
    for (uint32_t m = mask; m; m &= m - 1) {
      const int j = __builtin_ctz(m);
      if (IsExcluded(u, first + j)) mask &= ~(uint32_t{1} << j);
    }
  }
#if defined(__AVX512F__)
  const __m512 lo = _mm512_load_ps(scores), hi = _mm512_load_ps(scores + 16);
  const uint32_t nans =
      mask & (uint32_t{_mm512_cmp_ps_mask(lo, lo, _CMP_UNORD_Q)} |
              uint32_t{_mm512_cmp_ps_mask(hi, hi, _CMP_UNORD_Q)} << 16);
#else
  uint32_t nans = 0;
  for (uint32_t m = mask; m; m &= m - 1) {
    const int j = __builtin_ctz(m);
    if (scores[j] != scores[j]) nans |= uint32_t{1} << j;
  }
#endif
  if (nans) {
    u.nan = true;
    mask &= ~nans;
  }
  if (k <= kSorted) {
    for (; mask; mask &= mask - 1) {
      const int j = __builtin_ctz(mask);
      InsertSorted(u, scores[j], first + j);
    }
    u.threshold = u.scores[k - 1];
    return;
  }
  if (u.count + __builtin_popcount(mask) > k + kSlack) Cut(u, k);
#if defined(__AVX512F__)
  const __m512i iota =
      _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
  for (int half = 0; half < 2; ++half) {
    const __mmask16 m = static_cast<__mmask16>(mask >> (16 * half));
    const __m512i ids =
        _mm512_add_epi32(iota, _mm512_set1_epi32(first + 16 * half));
    _mm512_mask_compressstoreu_ps(u.scores + u.count, m,
                                  _mm512_load_ps(scores + 16 * half));
    _mm512_mask_compressstoreu_epi32(u.items + u.count, m, ids);
    u.count += __builtin_popcount(m);
  }
#else
  for (; mask; mask &= mask - 1) {
    const int j = __builtin_ctz(mask);
    u.scores[u.count] = scores[j];
    u.items[u.count++] = first + j;
  }
#endif
}

ffi::Error ScoreTopKImpl(ffi::Buffer<ffi::F32> users,
                         ffi::Buffer<ffi::F32> packed,
                         ffi::Buffer<ffi::S32> exclude,
                         ffi::ResultBuffer<ffi::F32> values,
                         ffi::ResultBuffer<ffi::S32> indices,
                         ffi::ResultBuffer<ffi::PRED> nan, int64_t k,
                         int64_t n) {
  auto ud = users.dimensions();
  auto pd = packed.dimensions();
  auto ed = exclude.dimensions();
  if (ud.size() != 2 || pd.size() != 3 || ed.size() != 2 ||
      pd[2] != kPanel || pd[1] != ud[1] || ed[0] != ud[0]) {
    return ffi::Error::InvalidArgument(
        "score_top_k takes users [B, d], packed items [P, d, 32] and "
        "exclude [B, E]");
  }
  const int64_t b_users = ud[0], d = ud[1], n_panels = pd[0], e = ed[1];
  if (n < 1 || n > n_panels * kPanel || n >= (int64_t{1} << 31)) {
    return ffi::Error::InvalidArgument("score_top_k: bad item count n");
  }
  if (k < 1 || k > n || k > 1024) {
    return ffi::Error::InvalidArgument(
        "score_top_k needs 1 <= k <= min(n, 1024)");
  }
  const float* u = users.typed_data();
  const float* p = packed.typed_data();
  const int64_t cap = k <= kSorted ? kSorted : k + kSlack;
  std::vector<float> buffer_scores(b_users * cap,
                                   -std::numeric_limits<float>::infinity());
  std::vector<int32_t> buffer_items(b_users * cap,
                                    std::numeric_limits<int32_t>::max());
  std::vector<int32_t> excluded(exclude.typed_data(),
                                exclude.typed_data() + b_users * e);
  std::vector<UserState> state(b_users);
  for (int64_t i = 0; i < b_users; ++i) {
    int32_t* row = excluded.data() + i * e;
    std::sort(row, row + e);
    // Ids outside [0, n) are padding; after sorting they sit at either end.
    const int32_t* lo = std::lower_bound(row, row + e, 0);
    const int32_t* hi = std::lower_bound(lo, (const int32_t*)row + e,
                                         static_cast<int32_t>(n));
    state[i] = {buffer_scores.data() + i * cap,
                buffer_items.data() + i * cap,
                0,
                -std::numeric_limits<float>::infinity(),
                lo,
                hi - lo,
                false};
  }
  std::vector<float> tile(kRows * d);
  float* a = tile.data();
  alignas(64) float scores[kRows * kPanel];
  for (int64_t p0 = 0; p0 < n_panels; p0 += kBlockPanels) {
    const int64_t p1 = std::min(n_panels, p0 + kBlockPanels);
    for (int64_t r0 = 0; r0 < b_users; r0 += kRows) {
      const int64_t rows = std::min<int64_t>(kRows, b_users - r0);
      std::memcpy(a, u + r0 * d, rows * d * sizeof(float));
      std::fill(a + rows * d, a + kRows * d, 0.0f);
      for (int64_t panel = p0; panel < p1; ++panel) {
        TileScores(a, p + panel * d * kPanel, d, scores);
        const int64_t first = panel * kPanel;
        const uint32_t lanes = n - first >= kPanel
                                   ? ~uint32_t{0}
                                   : (uint32_t{1} << (n - first)) - 1;
        for (int64_t r = 0; r < rows; ++r) {
          const float* row = scores + r * kPanel;
          UserState& st = state[r0 + r];
          const uint32_t mask = AboveOrNaN(row, st.threshold) & lanes;
          if (mask) Append(row, mask, static_cast<int32_t>(first), k, st);
        }
      }
    }
  }
  float* out_v = values->typed_data();
  int32_t* out_i = indices->typed_data();
  bool* out_nan = nan->typed_data();
  std::vector<Entry> best;
  for (int64_t i = 0; i < b_users; ++i) {
    const UserState& st = state[i];
    out_nan[i] = st.nan;
    if (k <= kSorted) {  // already sorted; empty slots hold the sentinel
      std::memcpy(out_v + i * k, st.scores, k * sizeof(float));
      std::memcpy(out_i + i * k, st.items, k * sizeof(int32_t));
      continue;
    }
    // Fewer than k candidates (the rest excluded or -inf): the empty slots
    // hold (-inf, 2**31 - 1), which sorts last.
    best.assign(std::max(k, st.count),
                Entry{-std::numeric_limits<float>::infinity(),
                      std::numeric_limits<int32_t>::max()});
    for (int64_t j = 0; j < st.count; ++j) {
      best[j] = {st.scores[j], st.items[j]};
    }
    std::partial_sort(
        best.begin(), best.begin() + k, best.end(),
        [](const Entry& x, const Entry& y) { return Worse(y, x); });
    for (int64_t j = 0; j < k; ++j) {
      out_v[i * k + j] = best[j].score;
      out_i[i * k + j] = best[j].index;
    }
  }
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxrecTopK, TopKImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::S32>>()
                                  .Attr<int64_t>("k"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxrecScoreTopK, ScoreTopKImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::S32>>()
                                  .Ret<ffi::Buffer<ffi::PRED>>()
                                  .Attr<int64_t>("k")
                                  .Attr<int64_t>("n"));
