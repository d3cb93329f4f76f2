#include "mixup_normalize.h"

namespace dali_mixup {

namespace {

// One sample: rows of the sample and its partner, each read left to right or mirrored.
// The inner loops are plain strided float arithmetic that the compiler vectorizes.
void BlendSample(const uint8_t *self, const uint8_t *partner, bool flip_self, bool flip_partner,
                 int64_t height, int64_t width, const Blend &blend, bool chw, float *out) {
  const int64_t plane = height * width;
  for (int64_t y = 0; y < height; y++) {
    const uint8_t *row_i = self + y * width * 3;
    const uint8_t *row_j = partner + y * width * 3;
    for (int c = 0; c < 3; c++) {
      const float a = blend.a[c], b = blend.b[c], offset = blend.offset[c];
      float *dst = chw ? out + c * plane + y * width : out + y * width * 3 + c;
      const int64_t step = chw ? 1 : 3;
      for (int64_t x = 0; x < width; x++) {
        const int64_t xi = flip_self ? width - 1 - x : x;
        const int64_t xj = flip_partner ? width - 1 - x : x;
        dst[x * step] = a * row_i[xi * 3 + c] + b * row_j[xj * 3 + c] + offset;
      }
    }
  }
}

}  // namespace

template <>
void MixupNormalize<::dali::CPUBackend>::RunImpl(::dali::Workspace &ws) {
  const auto &images = ws.Input<::dali::CPUBackend>(0);
  const auto &labels = ws.Input<::dali::CPUBackend>(1);
  auto &out = ws.Output<::dali::CPUBackend>(0);
  auto &targets = ws.Output<::dali::CPUBackend>(1);
  out.SetLayout(chw_ ? "CHW" : "HWC");
  DALI_ENFORCE(dtype_ == DALI_FLOAT, "the CPU backend writes float32 (DALI's CPU has no float16)");
  DALI_ENFORCE(labels.type() == DALI_INT32, "labels must be int32");
  const int n = images.num_samples();
  for (int i = 0; i < n; i++) {
    const int label = labels.tensor<int>(i)[0];
    DALI_ENFORCE(label >= 0 && label < num_classes_,
                 ::dali::make_string("label ", label, " of sample ", i, " is outside [0, ", num_classes_, ")"));
  }
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
      const int yi = labels.tensor<int>(i)[0], yj = labels.tensor<int>(j)[0];
      row[yi] += lam * (on - off);
      row[yj] += (1.0f - lam) * (on - off);
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
