// MixupDraws: each sample's mixing with CutMix on, from DALI's random draws, in one CPU operator.
//
// dali_mixup.mixup draws with DALI's random operators (Beta λs, coins for the mixup/CutMix switch and
// for `prob`, four uniforms for the box, a permutation for the partners) and this operator turns
// them into each sample's λ (the weight of its own label), partner and CutMix box, as timm's Mixup
// does: the box of rand_bbox (sides int(H·√(1−λ)) around a uniform centre, clipped) or of
// rand_bbox_minmax, λ corrected to the share of the sample's own pixels, a blended or untouched
// sample with an empty box. In the graph this took 37 to 51 scalar operators a batch, at ~0.09 ms
// each on a CPU core; here it is one. The arithmetic is the graph's, in float32 and in its order
// (no contraction into fused multiply-adds), so both give the same values from the same draws.
//
// In batch mode every sample takes the first sample's draws; in pair mode samples i and B − 1 − i
// are each other's partner and take the draws of the first of them; in elem mode each its own.
// It draws nothing itself, so DALI's checkpoints restore it with the random operators upstream.
#include <algorithm>
#include <cmath>
#include <vector>

#include "dali/pipeline/operator/checkpointing/stateless_operator.h"
#include "dali/pipeline/operator/common.h"
#include "dali/pipeline/operator/operator.h"

namespace dali_mixup {

enum MixMode : int { kBatchMode = 0, kElemMode = 1, kPairMode = 2 };

struct Draw {
  float mix_lam, cut_lam, uniform[4], size[2];
  int cut, blend, apply;  // the switch's choice (1: CutMix), its complement, prob's coin; -1 where not drawn
};

// One sample's λ and box from its draws: _draw and _cutmix_box of dali_mixup/mixup.py, operation for
// operation in float32.
__attribute__((optimize("fp-contract=off")))
void Mix(const Draw &d, const float *minmax, bool correct_lam, float *lam, int *box) {
  float low[2], high[2];
  for (int a = 0; a < 2; a++) {
    const float size = d.size[a];
    if (minmax == nullptr) {
      const float cut = std::floor(size * std::sqrt(1.0f - d.cut_lam));
      const float centre = std::floor(d.uniform[a] * size);
      low[a] = std::clamp(centre - std::floor(cut * 0.5f), 0.0f, size);
      high[a] = std::clamp(centre + std::floor((cut + 1.0f) * 0.5f), 0.0f, size);
    } else {
      const float shortest = std::floor(size * minmax[0]);
      const float cut = shortest + std::floor(d.uniform[a] * (std::floor(size * minmax[1]) - shortest));
      low[a] = std::floor(d.uniform[2 + a] * (size - cut + 1.0f));
      high[a] = low[a] + cut;
    }
  }
  const float area = (high[0] - low[0]) * (high[1] - low[1]) / (d.size[0] * d.size[1]);
  const float cut_lam = correct_lam || minmax != nullptr ? 1.0f - area : d.cut_lam;
  int cut = d.cut, blend = d.blend;
  if (d.apply >= 0) {  // prob's coin: a sample left alone is neither cut nor blended
    if (cut < 0) {
      cut = d.apply;
    } else {
      cut *= d.apply;
      blend *= d.apply;
    }
  }
  if (cut < 0) {  // CutMix on every sample
    *lam = cut_lam;
  } else {
    const float c = static_cast<float>(cut);
    float value = c * cut_lam + (1.0f - c);
    if (blend >= 0) value = value + static_cast<float>(blend) * (d.mix_lam - 1.0f);
    *lam = value;
  }
  const int keep = cut < 0 ? 1 : cut;
  box[0] = static_cast<int>(low[0]) * keep;
  box[1] = static_cast<int>(low[1]) * keep;
  box[2] = static_cast<int>(high[0]) * keep;
  box[3] = static_cast<int>(high[1]) * keep;
}

class MixupDraws : public ::dali::StatelessOperator<::dali::CPUBackend> {
 public:
  explicit MixupDraws(const ::dali::OpSpec &spec)
      : ::dali::StatelessOperator<::dali::CPUBackend>(spec),
        mode_(spec.GetArgument<int>("mode")),
        minmax_(spec.GetRepeatedArgument<float>("cutmix_minmax")),
        correct_lam_(spec.GetArgument<bool>("correct_lam")) {
    DALI_ENFORCE(mode_ >= kBatchMode && mode_ <= kPairMode, "mode must be 0 (batch), 1 (elem) or 2 (pair)");
    DALI_ENFORCE(minmax_.empty() || (minmax_.size() == 2 && 0 < minmax_[0] && minmax_[0] < minmax_[1] &&
                                     minmax_[1] <= 1),
                 "cutmix_minmax must be empty or [lo, hi] with 0 < lo < hi <= 1");
    DALI_ENFORCE(spec.HasTensorArgument("uniform") && spec.HasTensorArgument("image_size"),
                 "MixupDraws needs the uniform draws and the image size");
    DALI_ENFORCE(minmax_.size() == 2 || spec.HasTensorArgument("cut_lam"), "MixupDraws needs cut_lam without minmax");
    DALI_ENFORCE(mode_ == kPairMode || spec.HasTensorArgument("partner"), "MixupDraws needs the partners");
    DALI_ENFORCE(spec.HasTensorArgument("mix_lam") == spec.HasTensorArgument("switch"),
                 "mix_lam and switch go together (mixup beside CutMix)");
  }

 protected:
  bool SetupImpl(std::vector<::dali::OutputDesc> &output_desc, const ::dali::Workspace &ws) override {
    const int n = ws.GetRequestedBatchSize(0);
    DALI_ENFORCE(mode_ != kPairMode || n % 2 == 0, ::dali::make_string("pair mode needs an even batch, got ", n));
    output_desc.resize(3);
    output_desc[0] = {::dali::uniform_list_shape(n, ::dali::TensorShape<0>{}), DALI_FLOAT};
    output_desc[1] = {::dali::uniform_list_shape(n, ::dali::TensorShape<0>{}), DALI_INT32};
    output_desc[2] = {::dali::uniform_list_shape(n, ::dali::TensorShape<1>{4}), DALI_INT32};
    return true;
  }

  void RunImpl(::dali::Workspace &ws) override {
    const int n = ws.GetRequestedBatchSize(0);
    std::vector<Draw> draws(n);
    for (int i = 0; i < n; i++) {
      Draw &d = draws[i];
      d.mix_lam = Scalar<float>(ws, "mix_lam", i, 1.0f);
      d.cut_lam = Scalar<float>(ws, "cut_lam", i, 1.0f);
      d.cut = this->spec_.HasTensorArgument("switch") ? (Scalar<int>(ws, "switch", i, 0) != 0) : -1;
      d.blend = d.cut < 0 ? -1 : 1 - d.cut;
      d.apply = this->spec_.HasTensorArgument("apply") ? (Scalar<int>(ws, "apply", i, 1) != 0) : -1;
      Values(ws, "uniform", i, 4, d.uniform);
      Values(ws, "image_size", i, 2, d.size);
    }
    auto &lam = ws.Output<::dali::CPUBackend>(0);
    auto &partner = ws.Output<::dali::CPUBackend>(1);
    auto &box = ws.Output<::dali::CPUBackend>(2);
    const float *minmax = minmax_.empty() ? nullptr : minmax_.data();
    for (int i = 0; i < n; i++) {
      const int source = mode_ == kElemMode ? i : mode_ == kPairMode ? std::min(i, n - 1 - i) : 0;
      Mix(draws[source], minmax, correct_lam_, lam.mutable_tensor<float>(i), box.mutable_tensor<int>(i));
      *partner.mutable_tensor<int>(i) = mode_ == kPairMode ? n - 1 - i : Scalar<int>(ws, "partner", i, i);
    }
  }

 private:
  // Sample i's value of a per-sample argument of one value, or `fallback` where the argument is not given.
  template <typename T>
  T Scalar(const ::dali::Workspace &ws, const char *name, int i, T fallback) const {
    if (!this->spec_.HasTensorArgument(name)) return fallback;
    const auto &input = ws.ArgumentInput(name);
    DALI_ENFORCE(::dali::volume(input.tensor_shape(i)) == 1, ::dali::make_string(name, " needs one value a sample"));
    if (input.type() == DALI_FLOAT) return static_cast<T>(input.tensor<float>(i)[0]);
    if (input.type() == DALI_INT32) return static_cast<T>(input.tensor<int>(i)[0]);
    if (input.type() == DALI_BOOL) return static_cast<T>(input.tensor<bool>(i)[0]);
    DALI_FAIL(::dali::make_string(name, " must be float32, int32 or bool"));
  }

  void Values(const ::dali::Workspace &ws, const char *name, int i, int count, float *out) const {
    const auto &input = ws.ArgumentInput(name);
    DALI_ENFORCE(input.type() == DALI_FLOAT && ::dali::volume(input.tensor_shape(i)) == count,
                 ::dali::make_string(name, " needs ", count, " float32 values a sample"));
    std::copy(input.tensor<float>(i), input.tensor<float>(i) + count, out);
  }

  int mode_;
  std::vector<float> minmax_;
  bool correct_lam_;
};

}  // namespace dali_mixup

DALI_REGISTER_OPERATOR(MixupDraws, ::dali_mixup::MixupDraws, ::dali::CPU);

DALI_SCHEMA(MixupDraws)
    .DocStr(R"(Each sample's mixing with CutMix on, from DALI's random draws: λ (the weight of its own label),
its partner and its CutMix box [y0, x0, y1, x1) (empty for a blended or untouched sample), as timm's Mixup
chooses them. Outputs: lam (float32), partner (int32), box (int32 [4]).)")
    .NumInput(0)
    .NumOutput(3)
    .AddOptionalArg("mode", "0: batch (every sample takes the first's draws), 1: elem, 2: pair.", 0)
    .AddOptionalArg("cutmix_minmax", "[lo, hi]: box sides uniform in [lo, hi) of the image's; empty: from cut_lam.",
                    std::vector<float>())
    .AddOptionalArg("correct_lam", "λ of a cut sample is the share of its own pixels.", true)
    .AddOptionalArg("partner", "Each sample's partner (a permutation of the batch); not in pair mode.", 0, true)
    .AddOptionalArg("uniform", "Four uniform draws in [0, 1) a sample: the box's centre (or sides and corner).",
                    std::vector<float>(), true)
    .AddOptionalArg("image_size", "[height, width] of each image, float32.", std::vector<float>(), true)
    .AddOptionalArg("cut_lam", "CutMix's Beta draw (not with cutmix_minmax).", 1.0f, true)
    .AddOptionalArg("mix_lam", "mixup's Beta draw, with switch.", 1.0f, true)
    .AddOptionalArg("switch", "1 where a sample is cut, 0 where it is blended (mixup beside CutMix).", 0, true)
    .AddOptionalArg("apply", "prob's coin: 0 leaves a sample alone.", 1, true);
