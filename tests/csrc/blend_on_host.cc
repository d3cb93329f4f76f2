// MixupNormalize's CUDA kernel run on the host: BlendThread (dali_mixup/csrc/blend_kernel.h) for
// every thread of a grid of `threads` threads per sample, with the sample descriptors and the
// choice of wide or byte-wise path made as the GPU backend makes them. Built and called by
// tests/test_fused.py.
#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "dali/core/static_switch.h"
#include "blend_kernel.h"

using dali_mixup::SampleDesc;

// images: n uint8 HWC samples back to back; out: n samples of float32 or float16, CHW or HWC.
// The threads run one after another, last first when `reverse`: a thread that writes outside its
// own groups then leaves a wrong value in one order or the other. Returns 1 when the wide path ran.
extern "C" int blend_on_host(const uint8_t *images, int n, int height, int width, const int *partner,
                             const float *lam, const int *mirror, const float *mean, const float *std, int chw,
                             int fp16, int threads, int reverse, void *out) {
  const size_t values = size_t(height) * width * 3, out_size = fp16 ? sizeof(__half) : sizeof(float);
  const std::vector<float> mean3(mean, mean + 3), std3(std, std + 3);
  std::vector<SampleDesc> samples(n);
  for (int i = 0; i < n; i++) {
    const int j = partner[i];
    samples[i] = {images + i * values, images + j * values, static_cast<char *>(out) + i * values * out_size,
                  nullptr, 0, 0, dali_mixup::MakeBlend(lam[i], mean3, std3), lam[i], mirror[i], mirror[j]};
  }
  const bool wide = dali_mixup::CanBlendWide(samples.data(), n, width, out_size);
  BOOL_SWITCH(fp16, kHalf, (
    BOOL_SWITCH(chw, kCHW, (
      BOOL_SWITCH(wide, kWide, (
        using Out = std::conditional_t<kHalf, __half, float>;
        for (int i = 0; i < n; i++) {
          for (int k = 0; k < threads; k++) {
            dali_mixup::BlendThread<Out, kCHW, kWide>(samples[i], height, width, reverse ? threads - 1 - k : k,
                                                      threads);
          }
        }
      ));  // NOLINT
    ));  // NOLINT
  ));  // NOLINT
  return wide;
}
