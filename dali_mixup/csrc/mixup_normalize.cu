#include <tuple>
#include <type_traits>

#include <cuda_runtime_api.h>

#include "dali/core/static_switch.h"
#include "dali/kernels/dynamic_scratchpad.h"
#include "blend_kernel.h"
#include "mixup_normalize.h"

namespace dali_mixup {

namespace {

// One sample per blockIdx.y, its groups of 4 pixels spread over the x blocks (blend_kernel.h).
template <typename Out, bool kCHW, bool kWide>
__global__ void BlendKernel(const SampleDesc *samples, int height, int width) {
  const SampleDesc s = samples[blockIdx.y];  // in registers: the stores cannot alias it
  BlendThread<Out, kCHW, kWide>(s, height, width, blockIdx.x * blockDim.x + threadIdx.x, gridDim.x * blockDim.x);
}

__global__ void TargetsKernel(const SampleDesc *samples, int num_classes, float on, float off) {
  TargetsThread(samples[blockIdx.x], num_classes, on, off, threadIdx.x, blockDim.x);
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
  if (n == 0) return;
  DALI_ENFORCE(n <= 65535, "MixupNormalize on the GPU takes batches of up to 65535 samples");
  DALI_ENFORCE(height_ * width_ * 3 <= INT32_MAX, "MixupNormalize on the GPU takes images of fewer than 2^31 values");
  std::vector<SampleDesc> host(n);
  MakeSampleDescs(
      host.data(), n, [&](int i) { return images.tensor<uint8_t>(i); }, [&](int i) { return out.raw_mutable_tensor(i); },
      [&](int i) { return targets.mutable_tensor<float>(i); }, partner_.data(), lam_.data(), mirror_.data(),
      labels_.data(), boxes(), mean_, std_);
  cudaStream_t stream = ws.stream();
  // Stream-ordered scratch memory from DALI's pool, released when the kernels are done with it; the
  // descriptors go through a pinned staging buffer, so the copy does not stall the stream.
  ::dali::kernels::DynamicScratchpad scratch(stream);
  const SampleDesc *samples = std::get<0>(scratch.ToContiguousGPU(stream, host));
  const int height = static_cast<int>(height_), width = static_cast<int>(width_);
  const bool fp16 = dtype_ == DALI_FLOAT16;
  const bool wide = CanBlendWide(host.data(), n, width, fp16 ? sizeof(__half) : sizeof(float));
  dim3 grid(BlocksPerSample(height, width), n);
  BOOL_SWITCH(fp16, kHalf, (
    BOOL_SWITCH(chw_, kCHW, (
      BOOL_SWITCH(wide, kWide, (
        using Out = std::conditional_t<kHalf, __half, float>;
        BlendKernel<Out, kCHW, kWide><<<grid, kThreadsPerBlock, 0, stream>>>(samples, height, width);
      ));  // NOLINT
    ));  // NOLINT
  ));  // NOLINT
  const float off = label_smoothing_ / num_classes_;
  TargetsKernel<<<n, kTargetThreads, 0, stream>>>(samples, num_classes_, 1.0f - label_smoothing_ + off, off);
  CUDA_CALL(cudaGetLastError());
}

}  // namespace dali_mixup

DALI_REGISTER_OPERATOR(MixupNormalize, ::dali_mixup::MixupNormalize<::dali::GPUBackend>, ::dali::GPU);
