// The per-thread work of MixupNormalize's CUDA kernel, written once for the device and the host.
//
// Each thread blends groups of 4 neighbouring pixels of one output row. On the wide path it reads
// a group as three 4-byte words from the sample and three from its partner, through the read-only
// cache (a warp's three loads together cover one contiguous span of 32 x 12 bytes), and writes
// each channel's 4 values, or the 12 interleaved values, as 16-byte (float) or 8-byte (half)
// vectors. The byte-wise path, for widths that are not a multiple of 4 or unaligned buffers, moves
// single bytes and values.
//
// Everything the CUDA backend does but the launch itself is here, for the device and the host: the
// per-sample descriptors (MakeSampleDescs), the launch geometry (BlocksPerSample), the choice of
// path (CanBlendWide) and each thread's work (BlendThread, TargetsThread). The tests build this
// header into a host program (tests/csrc/blend_on_host.cc) that runs every thread of the real
// grid, in both orders, under AddressSanitizer, and compare with the reference; only the launch
// (one sample per blockIdx.y) and the device's arithmetic need a GPU to be tested.
#ifndef DALI_MIXUP_BLEND_KERNEL_H_
#define DALI_MIXUP_BLEND_KERNEL_H_

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include <cuda_fp16.h>
#include <vector_functions.h>
#include <vector_types.h>

#include "dali/core/host_dev.h"
#include "blend.h"

namespace dali_mixup {

constexpr int kGroup = 4;  // pixels per group: 12 bytes, three aligned words

// One sample's work. Pixels inside `box` ([y0, x0, y1, x1), half-open, in output pixels) take
// `inside`, the others `outside`: a blended sample has an empty box and blends with its λ
// everywhere; a CutMix sample takes its own pixels outside the box and its partner's inside.
struct SampleDesc {
  const uint8_t *self;
  const uint8_t *partner;
  void *out;
  float *targets;
  int label_self;
  int label_partner;
  Blend outside;
  Blend inside;
  int box[4];
  float lam;  // the weight of the sample's own label
  int flip_self;
  int flip_partner;
};

inline bool IsEmptyBox(const int *box) { return box[0] >= box[2] || box[1] >= box[3]; }

// The wide path needs whole groups and buffers aligned for its words and vectors. With
// width % 4 == 0 every row starts on a multiple of 12 bytes, and every group's output on a
// multiple of 4 values, so aligned sample pointers are enough.
inline bool CanBlendWide(const SampleDesc *samples, int n, int width, size_t out_size) {
  auto aligned = [](const void *p, size_t bytes) { return reinterpret_cast<uintptr_t>(p) % bytes == 0; };
  if (width % kGroup != 0) return false;
  for (int i = 0; i < n; i++) {
    if (!aligned(samples[i].self, 4) || !aligned(samples[i].partner, 4) || !aligned(samples[i].out, kGroup * out_size))
      return false;
  }
  return true;
}

DALI_HOST_DEV inline int GroupsPerRow(int width) { return (width + kGroup - 1) / kGroup; }

DALI_HOST_DEV inline int GroupsPerSample(int height, int width) { return height * GroupsPerRow(width); }

// The launch: blockIdx.y is the sample; x blocks of kThreadsPerBlock threads share its groups, at
// most kMaxBlocksPerSample of them (a grid-stride loop takes the rest). The targets kernel gives
// each sample one block of kTargetThreads.
constexpr int kThreadsPerBlock = 256;
constexpr int kMaxBlocksPerSample = 1024;
constexpr int kTargetThreads = 128;

inline int BlocksPerSample(int height, int width) {
  return std::clamp((GroupsPerSample(height, width) + kThreadsPerBlock - 1) / kThreadsPerBlock, 1,
                    kMaxBlocksPerSample);
}

// The descriptors of a batch: sample i mixed with partner[i], each flipped by its own flag; boxes
// holds 4 ints per sample (see SampleDesc), or is null for no CutMix at all. image(i), out(i) and
// targets(i) give sample i's buffers.
template <typename ImageAt, typename OutAt, typename TargetsAt>
void MakeSampleDescs(SampleDesc *descs, int n, ImageAt image, OutAt out, TargetsAt targets, const int *partner,
                     const float *lam, const int *mirror, const int *labels, const int *boxes,
                     const std::vector<float> &mean, const std::vector<float> &std) {
  for (int i = 0; i < n; i++) {
    const int j = partner[i];
    SampleDesc &d = descs[i];
    d = {image(i), image(j), out(i), targets(i), labels[i], labels[j], MakeBlend(lam[i], mean, std),
         MakeBlend(0.0f, mean, std), {0, 0, 0, 0}, lam[i], mirror[i], mirror[j]};
    if (boxes != nullptr && !IsEmptyBox(boxes + 4 * i)) {
      d.outside = MakeBlend(1.0f, mean, std);  // CutMix: its own pixels outside the box
      std::copy(boxes + 4 * i, boxes + 4 * i + 4, d.box);
    }
  }
}

// A 4-byte load from an aligned address; on the device through the read-only data cache.
DALI_HOST_DEV inline uint32_t LoadWord(const uint8_t *p) {
#ifdef __CUDA_ARCH__
  return __ldg(reinterpret_cast<const unsigned int *>(p));
#else
  uint32_t word;
  memcpy(&word, p, sizeof(word));
  return word;
#endif
}

// One store of a whole vector to an address aligned for it.
template <typename Vector>
DALI_HOST_DEV inline void StoreVector(void *out, const Vector &v) {
#ifdef __CUDA_ARCH__
  *static_cast<Vector *>(out) = v;
#else
  memcpy(out, &v, sizeof(v));
#endif
}

DALI_HOST_DEV inline void Store(float *out, float v) { *out = v; }
DALI_HOST_DEV inline void Store(__half *out, float v) { *out = __float2half_rn(v); }

DALI_HOST_DEV inline void Store4(float *out, float v0, float v1, float v2, float v3) {
  StoreVector(out, make_float4(v0, v1, v2, v3));
}

DALI_HOST_DEV inline void Store4(__half *out, float v0, float v1, float v2, float v3) {
  const __half2 halves[2] = {__floats2half2_rn(v0, v1), __floats2half2_rn(v2, v3)};
  uint2 bits;  // one 8-byte store; a struct of two __half2 would be stored as two 4-byte halves
  memcpy(&bits, halves, sizeof(bits));
  StoreVector(out, bits);
}

// Bytes of 4 pixels held in three little-endian words, into px in output order: reversed when
// mirrored. Every index is a compile-time constant, so words and bytes stay in registers.
template <bool kFlip>
DALI_HOST_DEV inline void Unpack(const uint32_t (&w)[3], uint8_t (&px)[3 * kGroup]) {
#pragma unroll
  for (int k = 0; k < kGroup; k++) {
#pragma unroll
    for (int c = 0; c < 3; c++) {
      const int byte = (kFlip ? kGroup - 1 - k : k) * 3 + c;
      px[3 * k + c] = static_cast<uint8_t>(w[byte / 4] >> (8 * (byte % 4)));
    }
  }
}

// The `count` pixels from x0 of output row y of one image, flipped or not, into px (HWC order).
template <bool kWide>
DALI_HOST_DEV inline void LoadGroup(const uint8_t *image, bool flip, int width, int y, int x0, int count,
                                    uint8_t (&px)[3 * kGroup]) {
  if constexpr (kWide) {
    // Mirrored, output pixels x0..x0+3 are source pixels width-1-x0 down to width-4-x0: the whole
    // group that starts at width-4-x0, which is aligned too, read backwards.
    const int xs = flip ? width - kGroup - x0 : x0;
    const uint8_t *group = image + (y * width + xs) * 3;
    const uint32_t w[3] = {LoadWord(group), LoadWord(group + 4), LoadWord(group + 8)};
    if (flip) Unpack<true>(w, px);
    else Unpack<false>(w, px);
  } else {
#pragma unroll
    for (int k = 0; k < kGroup; k++) {
      if (k < count) {
        const uint8_t *pixel = image + (y * width + (flip ? width - 1 - x0 - k : x0 + k)) * 3;
#pragma unroll
        for (int c = 0; c < 3; c++) px[3 * k + c] = pixel[c];
      }
    }
  }
}

// Group `group` of sample s, counted row by row: out = a * x_i + b * x_j + offset per channel, with
// the inside blend's a, b and offset in the box and the outside blend's elsewhere.
template <typename Out, bool kCHW, bool kWide>
DALI_HOST_DEV inline void BlendGroup(const SampleDesc &s, int height, int width, int group) {
  const int groups_per_row = GroupsPerRow(width);
  const int y = group / groups_per_row;
  const int x0 = (group - y * groups_per_row) * kGroup;
  const int count = (kWide || width - x0 >= kGroup) ? kGroup : width - x0;
  uint8_t xi[3 * kGroup] = {}, xj[3 * kGroup] = {};
  LoadGroup<kWide>(s.self, s.flip_self, width, y, x0, count, xi);
  LoadGroup<kWide>(s.partner, s.flip_partner, width, y, x0, count, xj);
  const bool row_in_box = y >= s.box[0] && y < s.box[2];
  float v[3 * kGroup];  // HWC order: pixel k, channel c at 3 * k + c
#pragma unroll
  for (int e = 0; e < 3 * kGroup; e++) {
    const int c = e % 3, x = x0 + e / 3;
    // Selects of values, not of a reference to one of the blends: the descriptor stays in registers.
    const bool in = row_in_box && x >= s.box[1] && x < s.box[3];
    v[e] = (in ? s.inside.a[c] : s.outside.a[c]) * xi[e] + (in ? s.inside.b[c] : s.outside.b[c]) * xj[e] +
           (in ? s.inside.offset[c] : s.outside.offset[c]);
  }
  Out *out = static_cast<Out *>(s.out);
  const int plane = height * width, p0 = y * width + x0;
  if constexpr (kCHW) {
#pragma unroll
    for (int c = 0; c < 3; c++) {
      Out *dst = out + c * plane + p0;
      if constexpr (kWide) {
        Store4(dst, v[c], v[3 + c], v[6 + c], v[9 + c]);
      } else {
#pragma unroll
        for (int k = 0; k < kGroup; k++)
          if (k < count) Store(dst + k, v[3 * k + c]);
      }
    }
  } else {
    Out *dst = out + p0 * 3;
    if constexpr (kWide) {
#pragma unroll
      for (int q = 0; q < 3; q++) Store4(dst + 4 * q, v[4 * q], v[4 * q + 1], v[4 * q + 2], v[4 * q + 3]);
    } else {
#pragma unroll
      for (int e = 0; e < 3 * kGroup; e++)
        if (e < 3 * count) Store(dst + e, v[e]);
    }
  }
}

// Thread `thread` of the `threads` given to sample s: a grid-stride loop over its groups.
template <typename Out, bool kCHW, bool kWide>
DALI_HOST_DEV inline void BlendThread(const SampleDesc &s, int height, int width, int thread, int threads) {
  const int groups = GroupsPerSample(height, width);
  for (int group = thread; group < groups; group += threads) BlendGroup<Out, kCHW, kWide>(s, height, width, group);
}

// Thread `thread` of the `threads` given to sample s's targets: the smoothed one-hot rows blended.
DALI_HOST_DEV inline void TargetsThread(const SampleDesc &s, int num_classes, float on, float off, int thread,
                                        int threads) {
  for (int k = thread; k < num_classes; k += threads) {
    float value = off;
    if (k == s.label_self) value += s.lam * (on - off);
    if (k == s.label_partner) value += (1.0f - s.lam) * (on - off);
    s.targets[k] = value;
  }
}

}  // namespace dali_mixup

#endif  // DALI_MIXUP_BLEND_KERNEL_H_
