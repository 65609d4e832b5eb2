// Exact top-k over the last axis of a float32 array, for XLA's CPU backend.
//
// Order: higher score first; equal scores (with -0.0 == 0.0) go to the lower
// index. Each row is scanned once in index order, keeping the k best seen so
// far in a heap whose root is the worst of them. A later element has a higher
// index, so it enters only when its score is strictly above the root's; most
// of a row is therefore skipped 16 floats at a time by one vectorised compare
// against that threshold. NaN never compares above anything, so it never
// enters after the first k (callers detect NaN rows separately).

#include <algorithm>
#include <cstdint>
#include <cstring>

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

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxrecTopK, TopKImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::S32>>()
                                  .Attr<int64_t>("k"));
