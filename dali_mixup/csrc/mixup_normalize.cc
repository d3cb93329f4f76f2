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
    if (chw) {
      for (int c = 0; c < 3; c++) {
        float *plane_row = out + c * plane + y * width;
        for (int64_t x = 0; x < width; x++) plane_row[x] = blended[x * 3 + c];
      }
    }
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
  std::vector<SampleDesc> samples(n);
  MakeSampleDescs(
      samples.data(), n, [&](int i) { return images.tensor<uint8_t>(i); },
      [&](int i) { return static_cast<void *>(out.mutable_tensor<float>(i)); },
      [&](int i) { return targets.mutable_tensor<float>(i); }, partner_.data(), lam_.data(), mirror_.data(),
      labels_.data(), boxes(), mean_, std_);
  auto &pool = ws.GetThreadPool();
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
    .DocStr(R"(Mixup or CutMix, horizontal flip and normalization of uint8 HWC crops in one pass.

Sample ``i`` becomes ``(lam[i] * flip_i(x_i) + (1 - lam[i]) * flip_j(x_j) - mean) / std`` with
``j = partner[i]``, each sample flipped by its own ``mirror`` flag, and its target the same blend
of the (smoothed) one-hot labels. Outputs: the images and the float32 targets.)")
    .NumInput(2)
    .InputDevice(1, ::dali::InputDevice::CPU)  // the labels: one int per sample, read on the host
    .NumOutput(2)
    .AddArg("lam", "Mixing weight, one per sample.", DALI_FLOAT, true)
    .AddArg("partner", "Index of the partner sample in the batch, one per sample.", DALI_INT32, true)
    .AddOptionalArg("mirror", "Flip horizontally (non-zero) or not, one per sample.", 0, true)
    .AddOptionalArg("box", R"(CutMix box [y0, x0, y1, x1), half-open, in output pixels, one per sample. A
sample with a non-empty box takes its partner's pixels inside it and its own outside; lam still
weighs its target. Empty boxes, or none, blend the whole sample with lam.)", std::vector<int>(), true)
    .AddArg("mean", "Per-channel mean, subtracted after the blend.", DALI_FLOAT_VEC)
    .AddArg("std", "Per-channel standard deviation, divided by after the blend.", DALI_FLOAT_VEC)
    .AddArg("num_classes", "Number of classes of the targets.", DALI_INT32)
    .AddOptionalArg("label_smoothing", "Smoothing of the one-hot rows.", 0.0f)
    .AddOptionalTypeArg("dtype", "Output type: FLOAT, or FLOAT16 on the GPU.", DALI_FLOAT)
    .AddOptionalArg("output_layout", "\"CHW\" or \"HWC\".", std::string("CHW"));

namespace dali_mixup {

template <>
MixupNormalize<::dali::CPUBackend>::~MixupNormalize() = default;

}  // namespace dali_mixup
