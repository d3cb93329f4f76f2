#include <algorithm>
#include <array>
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

// One pass of the resize (resample.h): one sample per blockIdx.y, its pixels over the x blocks.
template <bool kFirst>
__global__ void ResizeKernel(const ResizeDesc *descs, int height, int width) {
  const ResizeDesc d = descs[blockIdx.y];
  ResizeThread<kFirst>(d, height, width, blockIdx.x * blockDim.x + threadIdx.x, gridDim.x * blockDim.x);
}

int ResizeBlocks(int64_t pixels) {
  return static_cast<int>(std::clamp<int64_t>((pixels + kThreadsPerBlock - 1) / kThreadsPerBlock, 1,
                                              kMaxBlocksPerSample));
}

// Resizes every image of the batch into `out` (n images of height x width x 3, `image_bytes` apart): the
// weights made on the host and copied once, the first pass of every sample, then the second.
void ResizeBatch(const ::dali::TensorList<::dali::GPUBackend> &images, const std::vector<Resize> &resizes, int height,
                 int width, int64_t image_bytes, uint8_t *out, ::dali::kernels::DynamicScratchpad &scratch,
                 cudaStream_t stream) {
  const int n = images.num_samples();
  std::vector<AxisWeights> horizontal, vertical;
  std::vector<ResizeGeometry> geometry;
  std::vector<int> ints;        // every axis's first and count, back to back
  std::vector<int32_t> weights;  // and its weights
  std::vector<std::array<int64_t, 6>> at(n);  // where each sample's h_first, h_count, v_first, v_count, h and v weights start
  int64_t most_first_pass = 1;
  for (int i = 0; i < n; i++) {
    horizontal.push_back(MakeAxisWeights(resizes[i].in_width, resizes[i].full_width, resizes[i].offset_x, width,
                                         resizes[i].filter));
    vertical.push_back(MakeAxisWeights(resizes[i].in_height, resizes[i].full_height, resizes[i].offset_y, height,
                                       resizes[i].filter));
    geometry.emplace_back(resizes[i], horizontal[i], vertical[i], height, width);
    most_first_pass = std::max<int64_t>(most_first_pass, geometry[i].rows * static_cast<int64_t>(geometry[i].columns));
    int64_t k = 0;
    for (const std::vector<int> *axis : {&horizontal[i].first, &horizontal[i].count, &vertical[i].first,
                                         &vertical[i].count}) {
      at[i][k++] = ints.size();
      ints.insert(ints.end(), axis->begin(), axis->end());
    }
    at[i][4] = weights.size();
    weights.insert(weights.end(), horizontal[i].weights.begin(), horizontal[i].weights.end());
    at[i][5] = weights.size();
    weights.insert(weights.end(), vertical[i].weights.begin(), vertical[i].weights.end());
  }
  auto [device_ints, device_weights] = scratch.ToContiguousGPU(stream, ints, weights);
  std::vector<ResizeDesc> descs(n);
  for (int i = 0; i < n; i++) {
    uint8_t *temp = scratch.AllocateGPU<uint8_t>(geometry[i].first_pass_bytes(), 16);
    descs[i] = {images.tensor<uint8_t>(i), resizes[i].in_width, temp, out + i * image_bytes,
                geometry[i].vertical_first, geometry[i].first, geometry[i].rows, geometry[i].columns,
                device_ints + at[i][0], device_ints + at[i][1], device_ints + at[i][2], device_ints + at[i][3],
                device_weights + at[i][4], device_weights + at[i][5], horizontal[i].ksize, vertical[i].ksize};
  }
  const ResizeDesc *device_descs = std::get<0>(scratch.ToContiguousGPU(stream, descs));
  ResizeKernel<true><<<dim3(ResizeBlocks(most_first_pass), n), kThreadsPerBlock, 0, stream>>>(device_descs, height,
                                                                                               width);
  ResizeKernel<false><<<dim3(ResizeBlocks(static_cast<int64_t>(height) * width), n), kThreadsPerBlock, 0, stream>>>(
      device_descs, height, width);
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
  cudaStream_t stream = ws.stream();
  // Stream-ordered scratch memory from DALI's pool, released when the kernels are done with it; the
  // descriptors go through a pinned staging buffer, so the copy does not stall the stream.
  ::dali::kernels::DynamicScratchpad scratch(stream);
  // With `size`, each crop is resized once into scratch memory, 16-byte aligned for the blend's wide path.
  const int64_t image_bytes = (height_ * width_ * 3 + 15) / 16 * 16;
  uint8_t *resized = nullptr;
  if (resizing()) {
    resized = scratch.AllocateGPU<uint8_t>(n * image_bytes, 16);
    ResizeBatch(images, resizes_, static_cast<int>(height_), static_cast<int>(width_), image_bytes, resized, scratch,
                stream);
  }
  std::vector<SampleDesc> host(n);
  MakeSampleDescs(
      host.data(), n,
      [&](int i) { return resized ? resized + i * image_bytes : images.tensor<uint8_t>(i); },
      [&](int i) { return out.raw_mutable_tensor(i); },
      [&](int i) { return targets.mutable_tensor<float>(i); }, partner_.data(), lam_.data(), mirror_.data(),
      labels_.data(), boxes(), mean_, std_);
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
