#include <vector>

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

// One sample: each row of the sample and of its partner (mirrored into a scratch row when its own
// flag says so) goes through BlendRow; for CHW the blended row is then split into the 3 planes.
void BlendSample(const uint8_t *self, const uint8_t *partner, bool flip_self, bool flip_partner,
                 int64_t height, int64_t width, const Blend &blend, bool chw, float *out) {
  const int64_t row = width * 3, plane = height * width;
  std::vector<float> a(row), b(row), offset(row), blended(chw ? row : 0);
  std::vector<uint8_t> mirrored_self(flip_self ? row : 0), mirrored_partner(flip_partner ? row : 0);
  for (int64_t k = 0; k < row; k++) {
    a[k] = blend.a[k % 3];
    b[k] = blend.b[k % 3];
    offset[k] = blend.offset[k % 3];
  }
  for (int64_t y = 0; y < height; y++) {
    const uint8_t *row_i = self + y * row;
    const uint8_t *row_j = partner + y * row;
    if (flip_self) {
      MirrorRow(row_i, width, mirrored_self.data());
      row_i = mirrored_self.data();
    }
    if (flip_partner) {
      MirrorRow(row_j, width, mirrored_partner.data());
      row_j = mirrored_partner.data();
    }
    float *dst = chw ? blended.data() : out + y * row;
    BlendRow(row_i, row_j, a.data(), b.data(), offset.data(), dst, row);
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
  auto &pool = ws.GetThreadPool();
  for (int i = 0; i < n; i++) {
    pool.AddWork([&, i](int) {
      const int j = partner_[i];
      const float lam = lam_[i];
      BlendSample(images.tensor<uint8_t>(i), images.tensor<uint8_t>(j), mirror_[i] != 0, mirror_[j] != 0,
                  height_, width_, MakeBlend(lam, mean_, std_), chw_, out.mutable_tensor<float>(i));
      float *row = targets.mutable_tensor<float>(i);
      for (int k = 0; k < num_classes_; k++) row[k] = off;
      row[labels_[i]] += lam * (on - off);
      row[labels_[j]] += (1.0f - lam) * (on - off);
    }, height_ * width_);
  }
  pool.RunAll();
}

}  // namespace dali_mixup

DALI_REGISTER_OPERATOR(MixupNormalize, ::dali_mixup::MixupNormalize<::dali::CPUBackend>, ::dali::CPU);

DALI_SCHEMA(MixupNormalize)
    .DocStr(R"(Mixup, horizontal flip and normalization of uint8 HWC crops in one pass.

Sample ``i`` becomes ``(lam[i] * flip_i(x_i) + (1 - lam[i]) * flip_j(x_j) - mean) / std`` with
``j = partner[i]``, each sample flipped by its own ``mirror`` flag, and its target the same blend
of the (smoothed) one-hot labels. Outputs: the images and the float32 targets.)")
    .NumInput(2)
    .InputDevice(1, ::dali::InputDevice::CPU)  // the labels: one int per sample, read on the host
    .NumOutput(2)
    .AddArg("lam", "Mixing weight, one per sample.", DALI_FLOAT, true)
    .AddArg("partner", "Index of the partner sample in the batch, one per sample.", DALI_INT32, true)
    .AddOptionalArg("mirror", "Flip horizontally (non-zero) or not, one per sample.", 0, true)
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
