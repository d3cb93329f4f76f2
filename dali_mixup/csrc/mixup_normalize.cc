#include <vector>

#include "blend_kernel.h"
#include "mixup_normalize.h"

namespace dali_mixup {

namespace {

// out[k] = a[k] * x[k] + b[k] * y[k] + offset[k] over one interleaved row: contiguous loads of
// uint8 and float, so the compiler vectorizes it; target_clones adds an AVX2/FMA version that
// is picked at load time on CPUs that have it.
__attribute__((target_clones("avx2", "default")))
void BlendRow(const uint8_t *__restrict x, const uint8_t *__restrict y, const float *__restrict a,
              const float *__restrict b, const float *__restrict offset, float *__restrict out, int64_t n) {
  for (int64_t k = 0; k < n; k++) {
    out[k] = a[k] * x[k] + b[k] * y[k] + offset[k];
  }
}

// The pixels of one HWC row in reverse order, channels kept in order.
void MirrorRow(const uint8_t *row, int64_t width, uint8_t *out) {
  for (int64_t x = 0; x < width; x++) {
    const uint8_t *pixel = row + (width - 1 - x) * 3;
    out[x * 3] = pixel[0];
    out[x * 3 + 1] = pixel[1];
    out[x * 3 + 2] = pixel[2];
  }
}

// The per-channel coefficients of a blend repeated over an interleaved row of `width` pixels.
struct RowBlend {
  std::vector<float> a, b, offset;
  RowBlend(const Blend &blend, int64_t width) : a(width * 3), b(width * 3), offset(width * 3) {
    for (int64_t k = 0; k < width * 3; k++) {
      a[k] = blend.a[k % 3];
      b[k] = blend.b[k % 3];
      offset[k] = blend.offset[k % 3];
    }
  }
  // Pixels [x0, x1) of a row through BlendRow.
  void Apply(const uint8_t *x, const uint8_t *y, float *out, int64_t x0, int64_t x1) const {
    if (x1 > x0) BlendRow(x + 3 * x0, y + 3 * x0, &a[3 * x0], &b[3 * x0], &offset[3 * x0], out + 3 * x0, 3 * (x1 - x0));
  }
};

// An interleaved row of `width` pixels into the row of each of the 3 planes (`plane` values apart): a
// strided copy that AVX2 does with shuffles.
__attribute__((target_clones("avx2", "default")))
void SplitRow(const float *__restrict row, int64_t width, float *__restrict out, int64_t plane) {
  for (int c = 0; c < 3; c++) {
    float *__restrict dst = out + c * plane;
    for (int64_t x = 0; x < width; x++) dst[x] = row[x * 3 + c];
  }
}

// One sample: each row of the sample and of its partner (mirrored into a scratch row when its own
// flag says so) goes through BlendRow, in up to three pieces where the row crosses the CutMix box;
// for CHW the blended row is then split into the 3 planes.
void BlendSample(const SampleDesc &s, int64_t height, int64_t width, bool chw) {
  const int64_t row = width * 3, plane = height * width;
  const RowBlend outside(s.outside, width), inside(s.inside, width);
  std::vector<float> blended(chw ? row : 0);
  std::vector<uint8_t> mirrored_self(s.flip_self ? row : 0), mirrored_partner(s.flip_partner ? row : 0);
  float *out = static_cast<float *>(s.out);
  for (int64_t y = 0; y < height; y++) {
    const uint8_t *row_i = s.self + y * row;
    const uint8_t *row_j = s.partner + y * row;
    if (s.flip_self) {
      MirrorRow(row_i, width, mirrored_self.data());
      row_i = mirrored_self.data();
    }
    if (s.flip_partner) {
      MirrorRow(row_j, width, mirrored_partner.data());
      row_j = mirrored_partner.data();
    }
    float *dst = chw ? blended.data() : out + y * row;
    if (y >= s.box[0] && y < s.box[2]) {
      outside.Apply(row_i, row_j, dst, 0, s.box[1]);
      inside.Apply(row_i, row_j, dst, s.box[1], s.box[3]);
      outside.Apply(row_i, row_j, dst, s.box[3], width);
    } else {
      outside.Apply(row_i, row_j, dst, 0, width);
    }
    if (chw) SplitRow(blended.data(), width, out + y * width, plane);
  }
}

// The vertical pass of rows of `values` bytes: out row y is the weighted sum of input rows first[y]...,
// `stride` bytes apart, whose row 0 is `first_row`. Row by row: the inner loop over the row's bytes is
// plain integer arithmetic the compiler vectorizes, and the same sums as VerticalPixel's.
__attribute__((target_clones("avx2", "default")))
void VerticalRows(const uint8_t *in, int64_t stride, int first_row, const AxisWeights &axis, int rows, int64_t values,
                  int32_t *__restrict sums, uint8_t *out, int64_t out_stride) {
  for (int y = 0; y < rows; y++) {
    for (int64_t e = 0; e < values; e++) sums[e] = 1 << (kPrecisionBits - 1);
    const int32_t *k = &axis.weights[static_cast<size_t>(y) * axis.ksize];
    for (int t = 0; t < axis.count[y]; t++) {
      const uint8_t *__restrict row = in + (axis.first[y] - first_row + t) * stride;
      const int32_t w = k[t];
      for (int64_t e = 0; e < values; e++) sums[e] += row[e] * w;
    }
    uint8_t *__restrict dst = out + y * out_stride;
    for (int64_t e = 0; e < values; e++) dst[e] = Clip8(sums[e]);
  }
}

// The horizontal pass of kRows rows (`stride` bytes apart) whose pixel 0 is input column `first_column`:
// Pillow's sums (the same integers as HorizontalPixel's), the rows side by side so that their sums are
// independent work for the core.
template <int kRows>
void HorizontalRowsAtOnce(const uint8_t *in, int64_t stride, int first_column, const AxisWeights &axis, int width,
                          uint8_t *out) {
  for (int x = 0; x < width; x++) {
    const int32_t *k = &axis.weights[static_cast<size_t>(x) * axis.ksize];
    const uint8_t *pixels = in + (axis.first[x] - first_column) * 3;
    int32_t sums[kRows][3];
    for (int r = 0; r < kRows; r++) sums[r][0] = sums[r][1] = sums[r][2] = 1 << (kPrecisionBits - 1);
    for (int t = 0; t < axis.count[x]; t++) {
      const int32_t w = k[t];
      for (int r = 0; r < kRows; r++) {
        const uint8_t *p = pixels + r * stride + 3 * t;
        sums[r][0] += p[0] * w;
        sums[r][1] += p[1] * w;
        sums[r][2] += p[2] * w;
      }
    }
    for (int r = 0; r < kRows; r++) {
      for (int c = 0; c < 3; c++) out[static_cast<int64_t>(r) * width * 3 + 3 * x + c] = Clip8(sums[r][c]);
    }
  }
}

// The horizontal pass of `rows` rows, `stride` bytes apart, into rows of `width` pixels; two at a time (10%
// faster here than one: the loads and multiplies of two rows overlap).
void HorizontalRows(const uint8_t *in, int64_t stride, int first_column, const AxisWeights &axis, int rows, int width,
                    uint8_t *out) {
  int y = 0;
  for (; y + 2 <= rows; y += 2) {
    HorizontalRowsAtOnce<2>(in + y * stride, stride, first_column, axis, width, out + static_cast<int64_t>(y) * width * 3);
  }
  if (y < rows) HorizontalRowsAtOnce<1>(in + y * stride, stride, first_column, axis, width, out + static_cast<int64_t>(y) * width * 3);
}

// One sample's resize (resample.h) into `out` (height x width x 3), in Pillow 13's order of the passes;
// `temp` and `sums` are this thread's scratch.
void ResizeSample(const uint8_t *in, const Resize &r, int height, int width, uint8_t *out, std::vector<uint8_t> &temp,
                  std::vector<int32_t> &sums) {
  const AxisWeights horizontal = MakeAxisWeights(r.in_width, r.full_width, r.offset_x, width, r.filter);
  const AxisWeights vertical = MakeAxisWeights(r.in_height, r.full_height, r.offset_y, height, r.filter);
  const ResizeGeometry g(r, horizontal, vertical, height, width);
  const int64_t in_stride = static_cast<int64_t>(r.in_width) * 3, temp_stride = static_cast<int64_t>(g.columns) * 3;
  temp.resize(g.first_pass_bytes());
  if (g.vertical_first) {
    sums.resize(temp_stride);
    VerticalRows(in + g.first * 3, in_stride, 0, vertical, height, temp_stride, sums.data(), temp.data(), temp_stride);
    HorizontalRows(temp.data(), temp_stride, g.first, horizontal, height, width, out);
  } else {
    HorizontalRows(in + g.first * in_stride, in_stride, 0, horizontal, g.rows, width, temp.data());
    sums.resize(static_cast<size_t>(width) * 3);
    VerticalRows(temp.data(), temp_stride, g.first, vertical, height, static_cast<int64_t>(width) * 3, sums.data(), out,
                 static_cast<int64_t>(width) * 3);
  }
}

}  // namespace

template <>
void MixupNormalize<::dali::CPUBackend>::RunImpl(::dali::Workspace &ws) {
  const auto &images = ws.Input<::dali::CPUBackend>(0);
  auto &out = ws.Output<::dali::CPUBackend>(0);
  auto &targets = ws.Output<::dali::CPUBackend>(1);
  out.SetLayout(chw_ ? "CHW" : "HWC");
  DALI_ENFORCE(dtype_ == DALI_FLOAT, "the CPU backend writes float32 (DALI's CPU has no float16)");
  const int n = images.num_samples();
  const float off = label_smoothing_ / num_classes_;
  const float on = 1.0f - label_smoothing_ + off;
  auto &pool = ws.GetThreadPool();
  const int64_t image_bytes = height_ * width_ * 3;
  if (resizing()) {
    // Each crop resized once, into this operator's buffer, before any sample reads it as a partner.
    resized_.resize(n * image_bytes);
    scratch_.resize(pool.NumThreads() + 1);
    sums_.resize(pool.NumThreads() + 1);
    for (int i = 0; i < n; i++) {
      pool.AddWork([&, i](int thread) {
        ResizeSample(images.tensor<uint8_t>(i), resizes_[i], height_, width_, resized_.data() + i * image_bytes,
                     scratch_[thread + 1], sums_[thread + 1]);
      }, static_cast<int64_t>(resizes_[i].in_height) * resizes_[i].in_width);
    }
    pool.RunAll();
  }
  std::vector<SampleDesc> samples(n);
  MakeSampleDescs(
      samples.data(), n,
      [&](int i) { return resizing() ? resized_.data() + i * image_bytes : images.tensor<uint8_t>(i); },
      [&](int i) { return static_cast<void *>(out.mutable_tensor<float>(i)); },
      [&](int i) { return targets.mutable_tensor<float>(i); }, partner_.data(), lam_.data(), mirror_.data(),
      labels_.data(), boxes(), mean_, std_);
  for (int i = 0; i < n; i++) {
    pool.AddWork([&, i](int) {
      BlendSample(samples[i], height_, width_, chw_);
      TargetsThread(samples[i], num_classes_, on, off, 0, 1);  // the targets kernel's body, one thread
    }, height_ * width_);
  }
  pool.RunAll();
}

}  // namespace dali_mixup

DALI_REGISTER_OPERATOR(MixupNormalize, ::dali_mixup::MixupNormalize<::dali::CPUBackend>, ::dali::CPU);

DALI_SCHEMA(MixupNormalize)
    .DocStr(R"(Mixup or CutMix, horizontal flip and normalization of uint8 HWC crops in one pass, after a resize of
each crop with ``size``.

Sample ``i`` becomes ``(lam[i] * flip_i(x_i) + (1 - lam[i]) * flip_j(x_j) - mean) / std`` with
``j = partner[i]``, each sample flipped by its own ``mirror`` flag, and its target the same blend
of the (smoothed) one-hot labels. Outputs: the images and the float32 targets.)")
    .NumInput(2)
    .InputDevice(1, ::dali::InputDevice::CPU)  // the labels: one int per sample, read on the host
    .NumOutput(2)
    .AddOptionalArg("lam", "Mixing weight, one per sample; 1 (no mixing) by default.", 1.0f, true)
    .AddOptionalArg("partner", "Index of the partner sample in the batch, one per sample; -1 (itself) by default.",
                    -1, true)
    .AddOptionalArg("mirror", "Flip horizontally (non-zero) or not, one per sample.", 0, true)
    .AddOptionalArg("box", R"(CutMix box [y0, x0, y1, x1), half-open, in output pixels, one per sample. A
sample with a non-empty box takes its partner's pixels inside it and its own outside; lam still
weighs its target. Empty boxes, or none, blend the whole sample with lam.)", std::vector<int>(), true)
    .AddArg("mean", "Per-channel mean, subtracted after the blend.", DALI_FLOAT_VEC)
    .AddArg("std", "Per-channel standard deviation, divided by after the blend.", DALI_FLOAT_VEC)
    .AddArg("num_classes", "Number of classes of the targets.", DALI_INT32)
    .AddOptionalArg("label_smoothing", "Smoothing of the one-hot rows.", 0.0f)
    .AddOptionalTypeArg("dtype", "Output type: FLOAT, or FLOAT16 on the GPU.", DALI_FLOAT)
    .AddOptionalArg("output_layout", "\"CHW\" or \"HWC\".", std::string("CHW"))
    .AddOptionalArg("size", R"([height, width]: resize each image, of any size, to this first, as Pillow resizes
(its filters, fixed-point weights and uint8 rounding between the passes, Pillow 13's order of the
passes). Empty: no resize, one image shape across the batch.)", std::vector<int>())
    .AddOptionalArg("resized", R"([height, width] of the whole resize, one per sample, whose window at `offset`
of `size` the output is (val's resize then center crop); `size` by default.)", std::vector<int>(), true)
    .AddOptionalArg("offset", "[y, x] of the window in the whole resize, one per sample; [0, 0] by default.",
                    std::vector<int>(), true)
    .AddOptionalArg("resample", "The filter, one per sample: 0 bilinear, 1 bicubic, 2 Lanczos (Pillow's).", 0, true);

namespace dali_mixup {

template <>
MixupNormalize<::dali::CPUBackend>::~MixupNormalize() = default;

}  // namespace dali_mixup
