// MixupNormalize's CUDA backend run on the host: the descriptors (MakeSampleDescs), the launch geometry
// (BlocksPerSample), the choice of path (CanBlendWide) and every thread of both kernels (BlendThread,
// TargetsThread), all from dali_mixup/csrc/blend_kernel.h as the GPU backend uses them. Built with
// AddressSanitizer and run by tests/test_fused.py:
//
//   blend_on_host IN OUT n height width num_classes chw fp16 in_offset out_offset reverse
//                 label_smoothing [threads_per_block blocks_per_sample]
//
// IN holds the uint8 HWC images back to back, then partner, lam, mirror and labels (n each, int32 or
// float32), the CutMix boxes (4 int32 per sample, [y0, x0, y1, x1), empty for a blend) and mean and
// std (3 float32 each). Each sample gets buffers of its own, so that reading or
// writing outside a sample is an error AddressSanitizer reports: its image starts `in_offset` bytes
// into an allocation of exactly its size, its output `out_offset` values past a 16-value guard, with
// 16 guard values after it; everything starts as NaN (0xFF bytes, as float or half). OUT receives, in order: whether the wide path ran
// (int32), every sample's output buffer with its guards, and every sample's targets. The threads run
// one after another, samples and threads last first with `reverse`: a thread that writes outside its
// own groups then leaves a wrong value in one order or the other. The geometry is the kernels' own
// unless given (a small one makes the grid-stride loop take many turns).
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <string>
#include <type_traits>
#include <vector>

#include "dali/core/static_switch.h"
#include "blend_kernel.h"

namespace {

constexpr int kGuard = 16;  // values: keeps a sample's output 16-byte aligned before its out_offset

template <typename T>
std::vector<T> Read(std::ifstream &in, size_t count) {
  std::vector<T> values(count);
  in.read(reinterpret_cast<char *>(values.data()), count * sizeof(T));
  if (!in) {
    std::cerr << "input file too short\n";
    std::exit(2);
  }
  return values;
}

// An allocation of exactly `size` bytes, filled with 0xFF (NaN as float or half).
class Buffer {
 public:
  explicit Buffer(size_t size) : size_(size) {
    if (posix_memalign(reinterpret_cast<void **>(&data_), 64, size ? size : 1) != 0) std::abort();
    std::memset(data_, 0xFF, size);
  }
  Buffer(Buffer &&other) noexcept : data_(other.data_), size_(other.size_) { other.data_ = nullptr; }
  Buffer(const Buffer &) = delete;
  ~Buffer() { std::free(data_); }
  uint8_t *get() const { return data_; }
  size_t size() const { return size_; }

 private:
  uint8_t *data_ = nullptr;
  size_t size_;
};

}  // namespace

int main(int argc, char **argv) {
  if (argc != 13 && argc != 15) {
    std::cerr << "usage: blend_on_host IN OUT n height width num_classes chw fp16 in_offset out_offset reverse "
                 "label_smoothing [threads_per_block blocks_per_sample]\n";
    return 2;
  }
  const int n = std::stoi(argv[3]), height = std::stoi(argv[4]), width = std::stoi(argv[5]);
  const int num_classes = std::stoi(argv[6]);
  const bool chw = std::stoi(argv[7]), fp16 = std::stoi(argv[8]), reverse = std::stoi(argv[11]);
  const int in_offset = std::stoi(argv[9]), out_offset = std::stoi(argv[10]);
  const float label_smoothing = std::stof(argv[12]);
  const int threads_per_block = argc == 15 ? std::stoi(argv[13]) : dali_mixup::kThreadsPerBlock;
  const int blocks = argc == 15 ? std::stoi(argv[14]) : dali_mixup::BlocksPerSample(height, width);
  const size_t values = size_t(height) * width * 3, out_size = fp16 ? sizeof(__half) : sizeof(float);

  std::ifstream in(argv[1], std::ios::binary);
  const auto images = Read<uint8_t>(in, n * values);
  const auto partner = Read<int>(in, n);
  const auto lam = Read<float>(in, n);
  const auto mirror = Read<int>(in, n), labels = Read<int>(in, n), boxes = Read<int>(in, 4 * n);
  const auto mean = Read<float>(in, 3), std = Read<float>(in, 3);

  // Every buffer is an allocation of exactly its size, 64-byte aligned before the offsets.
  std::vector<Buffer> inputs, outputs, targets;
  const size_t out_values = kGuard + out_offset + values + kGuard;
  for (int i = 0; i < n; i++) {
    inputs.emplace_back(in_offset + values);
    std::memcpy(inputs[i].get() + in_offset, images.data() + i * values, values);
    outputs.emplace_back(out_values * out_size);
    targets.emplace_back(num_classes * sizeof(float));
  }
  std::vector<dali_mixup::SampleDesc> samples(n);
  dali_mixup::MakeSampleDescs(
      samples.data(), n, [&](int i) { return inputs[i].get() + in_offset; },
      [&](int i) { return static_cast<void *>(outputs[i].get() + (kGuard + out_offset) * out_size); },
      [&](int i) { return reinterpret_cast<float *>(targets[i].get()); }, partner.data(), lam.data(), mirror.data(),
      labels.data(), boxes.data(), mean, std);
  const bool wide = dali_mixup::CanBlendWide(samples.data(), n, width, out_size);
  const float off = label_smoothing / num_classes, on = 1.0f - label_smoothing + off;

  BOOL_SWITCH(fp16, kHalf, (
    BOOL_SWITCH(chw, kCHW, (
      BOOL_SWITCH(wide, kWide, (
        using Out = std::conditional_t<kHalf, __half, float>;
        const int threads = blocks * threads_per_block;
        for (int step = 0; step < n; step++) {
          const int i = reverse ? n - 1 - step : step;  // blockIdx.y
          for (int t = 0; t < threads; t++) {
            dali_mixup::BlendThread<Out, kCHW, kWide>(samples[i], height, width, reverse ? threads - 1 - t : t,
                                                      threads);
          }
          for (int t = 0; t < dali_mixup::kTargetThreads; t++) {
            const int thread = reverse ? dali_mixup::kTargetThreads - 1 - t : t;
            dali_mixup::TargetsThread(samples[i], num_classes, on, off, thread, dali_mixup::kTargetThreads);
          }
        }
      ));  // NOLINT
    ));  // NOLINT
  ));  // NOLINT

  std::ofstream out(argv[2], std::ios::binary);
  const int wide_flag = wide;
  out.write(reinterpret_cast<const char *>(&wide_flag), sizeof(wide_flag));
  for (const auto *buffers : {&outputs, &targets}) {
    for (const auto &buffer : *buffers) out.write(reinterpret_cast<const char *>(buffer.get()), buffer.size());
  }
  return out ? 0 : 1;
}
