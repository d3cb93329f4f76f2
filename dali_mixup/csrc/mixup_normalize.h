// MixupNormalize: mixup or CutMix, flip and normalization of uint8 HWC crops in one pass over the batch.
//
// For sample i with partner j = partner[i]:
//   out_i = (lam_i * flip_i(x_i) + (1 - lam_i) * flip_j(x_j) - mean) / std, laid out as CHW or HWC,
//   targets_i = lam_i * onehot(y_i) + (1 - lam_i) * onehot(y_j), with the one-hot rows smoothed.
// With a non-empty box [y0, x0, y1, x1) the sample is cut instead of blended: its pixels inside
// the box are its partner's, the others its own (lam_i still weighs the targets).
// Each sample is read once as itself and once as a partner, and the output is written once.
//
// With `size`, the crops come in any size and each is first resized to it as Pillow resizes (resample.h):
// the output is the window at `offset` of the crop resized to `resized` (the whole resize by default),
// so that train's random-resized crops and val's resize and center crop are this operator's one step.
// It draws nothing (λ, partners, flips and boxes are its inputs, from DALI's random operators), so it
// is stateless for DALI's checkpointing: a pipeline with it can be checkpointed and restored.
#ifndef DALI_MIXUP_MIXUP_NORMALIZE_H_
#define DALI_MIXUP_MIXUP_NORMALIZE_H_

#include <algorithm>
#include <string>
#include <vector>

#include "dali/pipeline/operator/checkpointing/stateless_operator.h"
#include "dali/pipeline/operator/common.h"
#include "dali/pipeline/operator/operator.h"
#include "blend.h"
#include "resample.h"

namespace dali_mixup {

template <typename Backend>
class MixupNormalize : public ::dali::StatelessOperator<Backend> {
 public:
  explicit MixupNormalize(const ::dali::OpSpec &spec)
      : ::dali::StatelessOperator<Backend>(spec),
        mean_(spec.GetRepeatedArgument<float>("mean")),
        std_(spec.GetRepeatedArgument<float>("std")),
        dtype_(spec.GetArgument<::dali::DALIDataType>("dtype")),
        chw_(spec.GetArgument<std::string>("output_layout") == "CHW"),
        num_classes_(spec.GetArgument<int>("num_classes")),
        label_smoothing_(spec.GetArgument<float>("label_smoothing")),
        size_(spec.GetRepeatedArgument<int>("size")) {
    DALI_ENFORCE(mean_.size() == 3 && std_.size() == 3, "mean and std need 3 values, one per channel");
    DALI_ENFORCE(dtype_ == DALI_FLOAT || dtype_ == DALI_FLOAT16,
                 "dtype must be FLOAT or FLOAT16");
    auto layout = spec.GetArgument<std::string>("output_layout");
    DALI_ENFORCE(layout == "CHW" || layout == "HWC", "output_layout must be \"CHW\" or \"HWC\", got " + layout);
    DALI_ENFORCE(num_classes_ >= 1, "num_classes must be >= 1");
    DALI_ENFORCE(size_.empty() || (size_.size() == 2 && size_[0] >= 1 && size_[1] >= 1),
                 "size must be [height, width], each >= 1, or empty (no resize)");
  }

 protected:
  ~MixupNormalize() override;

  bool SetupImpl(std::vector<::dali::OutputDesc> &output_desc, const ::dali::Workspace &ws) override {
    const auto &images = ws.Input<Backend>(0);
    int n = images.num_samples();
    DALI_ENFORCE(images.type() == DALI_UINT8, "MixupNormalize takes uint8 images");
    DALI_ENFORCE(images.sample_dim() == 3, "MixupNormalize takes HWC images");
    const auto &shape = images.shape();
    for (int i = 0; i < n; i++) {
      const auto sample = shape.tensor_shape_span(i), first = shape.tensor_shape_span(0);
      DALI_ENFORCE(sample[2] == 3, ::dali::make_string("MixupNormalize takes 3-channel images, sample ", i, " has ",
                                                       sample[2]));
      DALI_ENFORCE(resizing() || std::equal(sample.begin(), sample.end(), first.begin()),
                   "MixupNormalize needs one image shape across the batch, or `size` to resize each image to");
    }
    if (resizing()) ReadResizes(ws, shape, n);
    ::dali::GetPerSampleArgument<float>(lam_, "lam", this->spec_, ws, n);
    ::dali::GetPerSampleArgument<int>(partner_, "partner", this->spec_, ws, n);
    ::dali::GetPerSampleArgument<int>(mirror_, "mirror", this->spec_, ws, n);
    for (int i = 0; i < n; i++) {
      if (partner_[i] == -1) partner_[i] = i;  // the default: no partner, lam 1
      DALI_ENFORCE(partner_[i] >= 0 && partner_[i] < n, "partner index out of range");
    }
    // The labels are a CPU input on both backends: one int per sample, checked here.
    const auto &labels = ws.Input<::dali::CPUBackend>(1);
    DALI_ENFORCE(labels.type() == DALI_INT32, "labels must be int32");
    labels_.resize(n);
    for (int i = 0; i < n; i++) {
      const auto count = ::dali::volume(labels.tensor_shape(i));
      DALI_ENFORCE(count == 1, ::dali::make_string("sample ", i, " has ", count, " labels, expected 1"));
      labels_[i] = labels.tensor<int>(i)[0];
      DALI_ENFORCE(labels_[i] >= 0 && labels_[i] < num_classes_,
                   ::dali::make_string("label ", labels_[i], " of sample ", i, " is outside [0, ", num_classes_, ")"));
    }
    height_ = resizing() ? size_[0] : n ? shape[0][0] : 0;
    width_ = resizing() ? size_[1] : n ? shape[0][1] : 0;
    ReadBoxes(ws, n);
    output_desc.resize(2);
    ::dali::TensorShape<3> out_shape = chw_ ? ::dali::TensorShape<3>{3, height_, width_}
                                            : ::dali::TensorShape<3>{height_, width_, 3};
    output_desc[0] = {::dali::uniform_list_shape(n, out_shape), dtype_};
    output_desc[1] = {::dali::uniform_list_shape(n, ::dali::TensorShape<1>{num_classes_}), DALI_FLOAT};
    return true;
  }

  void RunImpl(::dali::Workspace &ws) override;

  // The per-sample CutMix boxes, 4 int32 each, checked to lie in the image; none without the argument.
  void ReadBoxes(const ::dali::Workspace &ws, int n) {
    has_boxes_ = this->spec_.HasTensorArgument("box");
    boxes_.assign(has_boxes_ ? 4 * n : 0, 0);
    if (!has_boxes_) return;
    const auto &boxes = ws.ArgumentInput("box");
    DALI_ENFORCE(boxes.type() == DALI_INT32, "box must be int32");
    for (int i = 0; i < n; i++) {
      DALI_ENFORCE(::dali::volume(boxes.tensor_shape(i)) == 4,
                   ::dali::make_string("the box of sample ", i, " needs 4 values [y0, x0, y1, x1]"));
      const int *box = boxes.tensor<int>(i);
      DALI_ENFORCE(0 <= box[0] && box[0] <= box[2] && box[2] <= height_ && 0 <= box[1] && box[1] <= box[3] &&
                       box[3] <= width_,
                   ::dali::make_string("the box [", box[0], ", ", box[1], ", ", box[2], ", ", box[3], ") of sample ",
                                       i, " is not inside the ", height_, "x", width_, " image"));
      std::copy(box, box + 4, boxes_.begin() + 4 * i);
    }
  }

  const int *boxes() const { return has_boxes_ ? boxes_.data() : nullptr; }

  bool resizing() const { return !size_.empty(); }

  // Each sample's resize: the whole resize's size (`resized`, default `size`), the window's corner in it
  // (`offset`, default 0) and the filter (`resample`), checked against the image and the window.
  void ReadResizes(const ::dali::Workspace &ws, const ::dali::TensorListShape<> &shape, int n) {
    std::vector<int> resized = ReadPairs(ws, "resized", n, size_), offset = ReadPairs(ws, "offset", n, {0, 0});
    ::dali::GetPerSampleArgument<int>(resample_, "resample", this->spec_, ws, n);
    resizes_.resize(n);
    for (int i = 0; i < n; i++) {
      Resize &r = resizes_[i];
      const auto sample = shape.tensor_shape_span(i);
      r = {static_cast<int>(sample[0]), static_cast<int>(sample[1]), resized[2 * i], resized[2 * i + 1],
           offset[2 * i], offset[2 * i + 1], resample_[i]};
      DALI_ENFORCE(r.in_height >= 1 && r.in_width >= 1, ::dali::make_string("sample ", i, " is an empty image"));
      DALI_ENFORCE(r.filter >= 0 && r.filter < kNumFilters,
                   ::dali::make_string("resample of sample ", i, " must be 0 (bilinear), 1 (bicubic) or 2 (Lanczos), "
                                       "got ", r.filter));
      DALI_ENFORCE(r.offset_y >= 0 && r.offset_x >= 0 && r.offset_y + size_[0] <= r.full_height &&
                       r.offset_x + size_[1] <= r.full_width,
                   ::dali::make_string("the ", size_[0], "x", size_[1], " window at (", r.offset_y, ", ", r.offset_x,
                                       ") of sample ", i, " is not inside its resize to ", r.full_height, "x",
                                       r.full_width));
    }
  }

  // A per-sample argument of 2 ints, or `fallback` for every sample where it is not given.
  std::vector<int> ReadPairs(const ::dali::Workspace &ws, const char *name, int n, const std::vector<int> &fallback) {
    std::vector<int> values(2 * n);
    for (int i = 0; i < n; i++) std::copy(fallback.begin(), fallback.end(), values.begin() + 2 * i);
    if (!this->spec_.HasTensorArgument(name)) return values;
    const auto &input = ws.ArgumentInput(name);
    DALI_ENFORCE(input.type() == DALI_INT32, ::dali::make_string(name, " must be int32"));
    for (int i = 0; i < n; i++) {
      DALI_ENFORCE(::dali::volume(input.tensor_shape(i)) == 2,
                   ::dali::make_string(name, " of sample ", i, " needs 2 values [y, x]"));
      std::copy(input.tensor<int>(i), input.tensor<int>(i) + 2, values.begin() + 2 * i);
    }
    return values;
  }

  std::vector<float> mean_, std_;
  ::dali::DALIDataType dtype_;
  bool chw_;
  int num_classes_;
  float label_smoothing_;
  std::vector<float> lam_;
  std::vector<int> partner_, mirror_, labels_, boxes_, resample_;
  bool has_boxes_ = false;
  std::vector<int> size_;  // [height, width] to resize to; empty: no resize
  std::vector<Resize> resizes_;
  std::vector<uint8_t> resized_;                 // the resized crops (CPU backend)
  std::vector<std::vector<uint8_t>> scratch_;    // each thread's first-pass pixels (CPU backend)
  std::vector<std::vector<int32_t>> sums_;       // each thread's row of sums (CPU backend)
  int64_t height_ = 0, width_ = 0;
};

}  // namespace dali_mixup

#endif  // DALI_MIXUP_MIXUP_NORMALIZE_H_
