// Pillow's resampling (libImaging/Resample.c, 8 bits per channel), for MixupNormalize's resize of the
// crops: torchvision's Resize and RandomResizedCrop on PIL images, to the bit.
//
// A resize is separable: one pass along an axis, rounded and clipped to uint8 as Pillow does, then
// the other, over only the pixels the second pass reads. Pillow 13 chose which comes first
// (VerticalFirst); Pillow 12 and older always ran the horizontal pass first, and their results differ
// by a level or two in some pixels where Pillow 13 goes vertical first. Each output pixel is a weighted sum of
// the input pixels under the filter (bilinear: a triangle; bicubic: a = -0.5; Lanczos: 3 lobes),
// stretched by the scale where it shrinks (antialiasing); the weights are computed in double,
// normalized to sum 1 and turned into 22-bit fixed point (Pillow's PRECISION_BITS), and the sums
// start at half a unit and are clipped to [0, 255] after the shift.
//
// A window of the output can be asked for: pixels [offset, offset + count) of an axis resized to
// full_size. Each output pixel's weights depend on its own position alone, so the window is exactly
// those pixels of the whole resize (val's Resize then CenterCrop, in one step).
//
// AxisWeights are made on the host; HorizontalPixel and VerticalPixel are each thread's work on the
// GPU and the CPU backend's reference (the CPU backend runs the same sums in a row-wise order the
// compiler vectorizes: integer sums, so the result is the same).
#ifndef DALI_MIXUP_RESAMPLE_H_
#define DALI_MIXUP_RESAMPLE_H_

#include <cmath>
#include <cstdint>
#include <vector>

#include "dali/core/host_dev.h"

namespace dali_mixup {

constexpr int kPrecisionBits = 32 - 8 - 2;  // Pillow's: 8 bits of result, 2 for overflow and the sign

// The filters, by the codes the operator's `interp` argument takes.
enum ResampleFilter : int { kBilinear = 0, kBicubic = 1, kLanczos = 2, kNumFilters = 3 };

inline double FilterSupport(int filter) { return filter == kBilinear ? 1.0 : filter == kBicubic ? 2.0 : 3.0; }

inline double Sinc(double x) {
  if (x == 0.0) return 1.0;
  x = x * M_PI;
  return std::sin(x) / x;
}

inline double FilterValue(int filter, double x) {
  if (filter == kLanczos) return (-3.0 <= x && x < 3.0) ? Sinc(x) * Sinc(x / 3) : 0.0;
  if (x < 0.0) x = -x;
  if (filter == kBilinear) return x < 1.0 ? 1.0 - x : 0.0;
  constexpr double a = -0.5;  // bicubic
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
  return 0.0;
}

// One axis of a resize: for each output pixel of the window, the first input pixel it reads, how
// many it reads, and ksize fixed-point weights (the ones past the count are 0).
struct AxisWeights {
  int ksize = 0;
  std::vector<int> first, count;
  std::vector<int32_t> weights;

  int first_input() const { return first.empty() ? 0 : first.front(); }
  int end_input() const { return first.empty() ? 0 : first.back() + count.back(); }  // one past the last read
};

// Pillow's precompute_coeffs and normalize_coeffs_8bpc for output pixels [offset, offset + count) of
// `in_size` input pixels resized to `full_size`.
inline AxisWeights MakeAxisWeights(int in_size, int full_size, int offset, int out_count, int filter) {
  const double scale = static_cast<double>(static_cast<float>(in_size)) / full_size;
  const double filterscale = scale < 1.0 ? 1.0 : scale;
  const double support = FilterSupport(filter) * filterscale;
  AxisWeights axis;
  axis.ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
  axis.first.resize(out_count);
  axis.count.resize(out_count);
  axis.weights.assign(static_cast<size_t>(out_count) * axis.ksize, 0);
  std::vector<double> k(axis.ksize);
  for (int i = 0; i < out_count; i++) {
    const int xx = offset + i;
    const double center = (xx + 0.5) * scale;
    const double ss = 1.0 / filterscale;
    int xmin = static_cast<int>(center - support + 0.5);  // C's truncation, as Pillow's
    if (xmin < 0) xmin = 0;
    int xmax = static_cast<int>(center + support + 0.5);
    if (xmax > in_size) xmax = in_size;
    xmax -= xmin;
    double ww = 0.0;
    for (int x = 0; x < xmax; x++) {
      k[x] = FilterValue(filter, (x + xmin - center + 0.5) * ss);
      ww += k[x];
    }
    for (int x = 0; x < xmax; x++) {
      if (ww != 0.0) k[x] /= ww;
      const double scaled = k[x] * (1 << kPrecisionBits);
      axis.weights[static_cast<size_t>(i) * axis.ksize + x] =
          static_cast<int32_t>(k[x] < 0 ? -0.5 + scaled : 0.5 + scaled);
    }
    axis.first[i] = xmin;
    axis.count[i] = xmax;
  }
  return axis;
}

// Pillow 13's order (ImagingResampleInner): the vertical pass first where the height shrinks by more than
// twice as many pixels as the width, which makes the horizontal pass cheaper.
inline bool VerticalFirst(int in_height, int in_width, int full_height, int full_width) {
  const int shrink_height = in_height - full_height, shrink_width = in_width - full_width;
  return shrink_height > 0 && shrink_height > shrink_width * 2;
}

// One sample's resize: its input size, the size of the whole resize, the corner of the output window
// in it, and the filter.
struct Resize {
  int in_height, in_width, full_height, full_width, offset_y, offset_x, filter;
};

// Pillow's clip8: the sum shifted back to 8 bits (arithmetically: a negative sum is below 0), clipped.
DALI_HOST_DEV inline uint8_t Clip8(int32_t sum) {
  const int32_t v = sum >> kPrecisionBits;
  return static_cast<uint8_t>(v < 0 ? 0 : v > 255 ? 255 : v);
}

// Horizontal pass: output pixel x of one row, its 3 channels, from an interleaved RGB row whose pixel 0
// is input column `first_column`.
DALI_HOST_DEV inline void HorizontalPixel(const uint8_t *in_row, int first_column, const int *first, const int *count,
                                          const int32_t *weights, int ksize, int x, uint8_t *out) {
  const int32_t *k = weights + x * ksize;
  const uint8_t *in = in_row + (first[x] - first_column) * 3;
  int32_t s0 = 1 << (kPrecisionBits - 1), s1 = s0, s2 = s0;
  for (int t = 0; t < count[x]; t++) {
    s0 += in[3 * t] * k[t];
    s1 += in[3 * t + 1] * k[t];
    s2 += in[3 * t + 2] * k[t];
  }
  out[0] = Clip8(s0);
  out[1] = Clip8(s1);
  out[2] = Clip8(s2);
}

// Vertical pass: output pixel (x, y), its 3 channels, from column x of rows `stride` bytes apart whose
// row 0 is input row `first_row`.
DALI_HOST_DEV inline void VerticalPixel(const uint8_t *rows, int64_t stride, int first_row, const int *first,
                                        const int *count, const int32_t *weights, int ksize, int x, int y,
                                        uint8_t *out) {
  const int32_t *k = weights + y * ksize;
  const uint8_t *in = rows + (first[y] - first_row) * stride + x * 3;
  int32_t s0 = 1 << (kPrecisionBits - 1), s1 = s0, s2 = s0;
  for (int t = 0; t < count[y]; t++) {
    s0 += in[t * stride] * k[t];
    s1 += in[t * stride + 1] * k[t];
    s2 += in[t * stride + 2] * k[t];
  }
  out[0] = Clip8(s0);
  out[1] = Clip8(s1);
  out[2] = Clip8(s2);
}

// Where one sample's first pass writes: in Pillow 13's order, the vertical pass first over the input
// columns the horizontal pass reads ([first, first + columns), all `height` output rows), or the
// horizontal pass first over the input rows the vertical pass reads ([first, first + rows), `width`
// output columns).
struct ResizeGeometry {
  bool vertical_first;
  int first, rows, columns;

  ResizeGeometry(const Resize &r, const AxisWeights &horizontal, const AxisWeights &vertical, int height, int width)
      : vertical_first(VerticalFirst(r.in_height, r.in_width, r.full_height, r.full_width)) {
    const AxisWeights &second = vertical_first ? horizontal : vertical;
    first = second.first_input();
    rows = vertical_first ? height : second.end_input() - first;
    columns = vertical_first ? second.end_input() - first : width;
  }
  int64_t first_pass_bytes() const { return static_cast<int64_t>(rows) * columns * 3; }
};

// One sample's resize as the GPU runs it: a thread per pixel of each pass (the two passes are two
// kernels). The weights' pointers are the device's copies of the sample's AxisWeights.
struct ResizeDesc {
  const uint8_t *in;
  int in_width;
  uint8_t *temp;  // the first pass's pixels: rows x columns x 3
  uint8_t *out;   // height x width x 3
  int vertical_first, first, rows, columns;
  const int *h_first, *h_count, *v_first, *v_count;
  const int32_t *h_weights, *v_weights;
  int h_ksize, v_ksize;
};

// Pixel `pixel` of the first (kFirst) or second pass of a sample whose output is height x width.
template <bool kFirst>
DALI_HOST_DEV inline void ResizePixel(const ResizeDesc &d, int width, int pixel) {
  if (kFirst) {
    const int r = pixel / d.columns, c = pixel - r * d.columns;
    uint8_t *out = d.temp + (static_cast<int64_t>(r) * d.columns + c) * 3;
    if (d.vertical_first) {
      VerticalPixel(d.in, static_cast<int64_t>(d.in_width) * 3, 0, d.v_first, d.v_count, d.v_weights, d.v_ksize,
                    d.first + c, r, out);
    } else {
      HorizontalPixel(d.in + static_cast<int64_t>(d.first + r) * d.in_width * 3, 0, d.h_first, d.h_count,
                      d.h_weights, d.h_ksize, c, out);
    }
  } else {
    const int y = pixel / width, x = pixel - y * width;
    uint8_t *out = d.out + (static_cast<int64_t>(y) * width + x) * 3;
    if (d.vertical_first) {
      HorizontalPixel(d.temp + static_cast<int64_t>(y) * d.columns * 3, d.first, d.h_first, d.h_count, d.h_weights,
                      d.h_ksize, x, out);
    } else {
      VerticalPixel(d.temp, static_cast<int64_t>(width) * 3, d.first, d.v_first, d.v_count, d.v_weights, d.v_ksize, x,
                    y, out);
    }
  }
}

// Thread `thread` of the `threads` given to one sample's pass: a grid-stride loop over its pixels.
template <bool kFirst>
DALI_HOST_DEV inline void ResizeThread(const ResizeDesc &d, int height, int width, int thread, int threads) {
  const int pixels = kFirst ? d.rows * d.columns : height * width;
  for (int pixel = thread; pixel < pixels; pixel += threads) ResizePixel<kFirst>(d, width, pixel);
}

}  // namespace dali_mixup

#endif  // DALI_MIXUP_RESAMPLE_H_
