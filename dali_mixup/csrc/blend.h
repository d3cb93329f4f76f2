// The per-sample blend of MixupNormalize in affine form, shared by the CPU and CUDA backends.
#ifndef DALI_MIXUP_BLEND_H_
#define DALI_MIXUP_BLEND_H_

#include <vector>

namespace dali_mixup {

// Per-channel affine form of the blend: out = a[c] * x_i + b[c] * x_j + offset[c].
struct Blend {
  float a[3], b[3], offset[3];
};

inline Blend MakeBlend(float lam, const std::vector<float> &mean, const std::vector<float> &std) {
  Blend blend;
  for (int c = 0; c < 3; c++) {
    float inv_std = 1.0f / std[c];
    blend.a[c] = lam * inv_std;
    blend.b[c] = (1.0f - lam) * inv_std;
    blend.offset[c] = -mean[c] * inv_std;
  }
  return blend;
}

}  // namespace dali_mixup

#endif  // DALI_MIXUP_BLEND_H_
