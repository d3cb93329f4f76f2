// MixupNormalize's CUDA kernel run on the host: BlendGroup (dali_mixup/csrc/blend_kernel.h) for
// every group of every sample, as the grid runs it, with the sample descriptors and the choice of
// wide or scalar path made as the GPU backend makes them. Built and called by tests/test_fused.py.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "blend_kernel.h"

using dali_mixup::SampleDesc;

// images: n uint8 HWC samples back to back; out: n samples of float32 or float16, CHW or HWC.
// Returns 1 when the wide path ran, 0 for the scalar one.
extern "C" int blend_on_host(const uint8_t *images, int n, int height, int width, const int *partner,
                             const float *lam, const int *mirror, const float *mean, const float *std, int chw,
                             int fp16, void *out) {
  const size_t values = size_t(height) * width * 3, out_size = fp16 ? sizeof(__half) : sizeof(float);
  const std::vector<float> mean3(mean, mean + 3), std3(std, std + 3);
  std::vector<SampleDesc> samples(n);
  for (int i = 0; i < n; i++) {
    const int j = partner[i];
    samples[i] = {images + i * values, images + j * values, static_cast<char *>(out) + i * values * out_size,
                  nullptr, 0, 0, dali_mixup::MakeBlend(lam[i], mean3, std3), lam[i], mirror[i], mirror[j]};
  }
  const bool wide = dali_mixup::CanBlendWide(samples.data(), n, width, out_size);
  dali_mixup::VisitBlend(fp16, chw, wide, [&](auto out_type, auto kchw, auto kwide) {
    using Out = typename decltype(out_type)::type;
    for (int i = 0; i < n; i++) {
      for (int g = 0; g < dali_mixup::GroupsPerSample(height, width); g++) {
        dali_mixup::BlendGroup<Out, decltype(kchw)::value, decltype(kwide)::value>(samples[i], height, width, g);
      }
    }
  });
  return wide;
}
