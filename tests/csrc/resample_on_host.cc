// The resize of MixupNormalize's CUDA backend run on the host: every thread of both passes
// (ResizeThread, in ResizeGeometry's order) over weights made by MakeAxisWeights, all from
// dali_mixup/csrc/resample.h as the GPU backend uses them. Built with AddressSanitizer and UBSan and
// run by tests/test_resize.py:
//
//   resample_on_host IN OUT in_height in_width full_height full_width offset_y offset_x height width filter threads
//
// IN holds one uint8 HWC image; OUT receives the output window (height x width x 3), pixels
// [offset, offset + size) of the image resized to full_height x full_width. The input, the first
// pass's pixels and the output are allocations of exactly their size, so that a read or write
// outside them is an error AddressSanitizer reports. `threads` threads share each pass, run one after
// another, last first, so that a thread that depended on another's work of the same pass would read
// garbage.
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <vector>

#include "resample.h"

int main(int argc, char **argv) {
  if (argc != 13) {
    std::cerr << "usage: resample_on_host IN OUT in_height in_width full_height full_width offset_y offset_x "
                 "height width filter threads\n";
    return 2;
  }
  const int in_height = std::atoi(argv[3]), in_width = std::atoi(argv[4]);
  const int full_height = std::atoi(argv[5]), full_width = std::atoi(argv[6]);
  const int offset_y = std::atoi(argv[7]), offset_x = std::atoi(argv[8]);
  const int height = std::atoi(argv[9]), width = std::atoi(argv[10]), filter = std::atoi(argv[11]);
  const int threads = std::atoi(argv[12]);
  std::vector<uint8_t> input(static_cast<size_t>(in_height) * in_width * 3);
  std::ifstream in(argv[1], std::ios::binary);
  in.read(reinterpret_cast<char *>(input.data()), input.size());
  if (!in) {
    std::cerr << "input file too short\n";
    return 2;
  }
  using dali_mixup::MakeAxisWeights;
  const dali_mixup::Resize r{in_height, in_width, full_height, full_width, offset_y, offset_x, filter};
  const auto horizontal = MakeAxisWeights(in_width, full_width, offset_x, width, filter);
  const auto vertical = MakeAxisWeights(in_height, full_height, offset_y, height, filter);
  const dali_mixup::ResizeGeometry g(r, horizontal, vertical, height, width);
  std::vector<uint8_t> temp(g.first_pass_bytes()), out(static_cast<size_t>(height) * width * 3);
  const dali_mixup::ResizeDesc d{input.data(), in_width, temp.data(), out.data(), g.vertical_first, g.first, g.rows,
                                 g.columns, horizontal.first.data(), horizontal.count.data(), vertical.first.data(),
                                 vertical.count.data(), horizontal.weights.data(), vertical.weights.data(),
                                 horizontal.ksize, vertical.ksize};
  // Every thread of a small grid (so that the grid-stride loop turns), last first, for each pass in turn.
  for (int thread = threads - 1; thread >= 0; thread--) dali_mixup::ResizeThread<true>(d, height, width, thread, threads);
  for (int thread = threads - 1; thread >= 0; thread--) dali_mixup::ResizeThread<false>(d, height, width, thread, threads);
  std::ofstream(argv[2], std::ios::binary).write(reinterpret_cast<const char *>(out.data()), out.size());
  return 0;
}
