#include <algorithm>

#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include "dali/kernels/dynamic_scratchpad.h"
#include "mixup_normalize.h"

namespace dali_mixup {

namespace {

struct SampleDesc {
  const uint8_t *self;
  const uint8_t *partner;
  void *out;
  float *targets;
  int label_self;
  int label_partner;
  Blend blend;
  float lam;
  int flip_self;
  int flip_partner;
};

__device__ inline void Store(float *out, int64_t index, float value) { out[index] = value; }
__device__ inline void Store(__half *out, int64_t index, float value) { out[index] = __float2half(value); }

// One thread per pixel: reads 3 bytes of the sample and 3 of its partner (adjacent threads read
// adjacent pixels, so a warp's loads coalesce), writes 3 outputs once.
template <typename Out, bool kCHW>
__global__ void BlendKernel(const SampleDesc *samples, int64_t height, int64_t width) {
  const SampleDesc s = samples[blockIdx.y];
  const int64_t plane = height * width;
  Out *out = static_cast<Out *>(s.out);
  for (int64_t p = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; p < plane; p += int64_t(gridDim.x) * blockDim.x) {
    const int64_t y = p / width, x = p - y * width;
    const int64_t xi = s.flip_self ? width - 1 - x : x;
    const int64_t xj = s.flip_partner ? width - 1 - x : x;
    const uint8_t *pi = s.self + (y * width + xi) * 3;
    const uint8_t *pj = s.partner + (y * width + xj) * 3;
#pragma unroll
    for (int c = 0; c < 3; c++) {
      float value = s.blend.a[c] * pi[c] + s.blend.b[c] * pj[c] + s.blend.offset[c];
      Store(out, kCHW ? c * plane + p : p * 3 + c, value);
    }
  }
}

__global__ void TargetsKernel(const SampleDesc *samples, int num_classes, float on, float off) {
  const SampleDesc s = samples[blockIdx.x];
  for (int k = threadIdx.x; k < num_classes; k += blockDim.x) {
    float value = off;
    if (k == s.label_self) value += s.lam * (on - off);
    if (k == s.label_partner) value += (1.0f - s.lam) * (on - off);
    s.targets[k] = value;
  }
}

}  // namespace

template <>
MixupNormalize<::dali::GPUBackend>::~MixupNormalize() = default;

template <>
void MixupNormalize<::dali::GPUBackend>::RunImpl(::dali::Workspace &ws) {
  const auto &images = ws.Input<::dali::GPUBackend>(0);
  auto &out = ws.Output<::dali::GPUBackend>(0);
  auto &targets = ws.Output<::dali::GPUBackend>(1);
  out.SetLayout(chw_ ? "CHW" : "HWC");
  const int n = images.num_samples();
  const int64_t plane = height_ * width_;
  if (n == 0) return;
  DALI_ENFORCE(n <= 65535, "MixupNormalize on the GPU takes batches of up to 65535 samples");
  std::vector<SampleDesc> host(n);
  for (int i = 0; i < n; i++) {
    const int j = partner_[i];
    host[i] = {images.tensor<uint8_t>(i), images.tensor<uint8_t>(j), out.raw_mutable_tensor(i),
               targets.mutable_tensor<float>(i), labels_[i], labels_[j], MakeBlend(lam_[i], mean_, std_), lam_[i],
               mirror_[i], mirror_[j]};
  }
  cudaStream_t stream = ws.stream();
  // Stream-ordered scratch memory from DALI's pool, released when the kernels are done with it.
  ::dali::kernels::DynamicScratchpad scratch(stream);
  const SampleDesc *samples = scratch.ToGPU(stream, host);
  const int threads = 256;
  dim3 grid(static_cast<unsigned>(std::clamp<int64_t>((plane + threads - 1) / threads, 1, 1024)), n);
  if (dtype_ == DALI_FLOAT16) {
    if (chw_) BlendKernel<__half, true><<<grid, threads, 0, stream>>>(samples, height_, width_);
    else BlendKernel<__half, false><<<grid, threads, 0, stream>>>(samples, height_, width_);
  } else {
    if (chw_) BlendKernel<float, true><<<grid, threads, 0, stream>>>(samples, height_, width_);
    else BlendKernel<float, false><<<grid, threads, 0, stream>>>(samples, height_, width_);
  }
  const float off = label_smoothing_ / num_classes_;
  TargetsKernel<<<n, 128, 0, stream>>>(samples, num_classes_, 1.0f - label_smoothing_ + off, off);
  CUDA_CALL(cudaGetLastError());
}

}  // namespace dali_mixup

DALI_REGISTER_OPERATOR(MixupNormalize, ::dali_mixup::MixupNormalize<::dali::GPUBackend>, ::dali::GPU);
