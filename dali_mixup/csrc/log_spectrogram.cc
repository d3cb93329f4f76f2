// LogSpectrogram: pipelines.speech's features of a clip in one CPU pass: frames centred every `hop` samples
// (the clip reflected at its ends, as NumPy's "reflect" pad), each times the window, its magnitude spectrum,
// log1p, the time axis cut or zero-padded to `frames`, and the whole standardized (mean, unbiased std;
// left as it is where the std is 0). Output [1, nfft / 2 + 1, frames], float32, "CHW".
//
// Why an operator of our own: DALI's CPU spectrogram takes a slow path where the FFT's size is not a
// power of two, and the features' is 320 (20 ms at 16 kHz): 0.51 ms a one-second clip on a core,
// against 0.08 ms at 256. Here the FFT of size N = N1 * m (N1 the largest power of two dividing N,
// m odd: 64 * 5 for 320) is Cooley-Tukey's split: m radix-2 FFTs of size N1 over the samples
// n = m * n1 + n2, then each bin k sums their values at k mod N1 under the twiddle exp(-2 pi i n2 k / N);
// only the bins up to N / 2 are made (the input is real). Eight frames go through it side by side, one
// per SIMD lane, so every inner loop is over the lanes.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "dali/pipeline/operator/checkpointing/stateless_operator.h"
#include "dali/pipeline/operator/common.h"
#include "dali/pipeline/operator/operator.h"

namespace dali_mixup {

namespace {

constexpr int kLanes = 8;  // frames transformed together

// NumPy's "reflect" padding: the sample at index i of a clip of `length`, for any i.
inline int64_t Reflect(int64_t i, int64_t length) {
  if (length == 1) return 0;
  const int64_t period = 2 * (length - 1);
  i %= period;
  if (i < 0) i += period;
  return i < length ? i : period - i;
}

// The twiddles and orders of one FFT size, made once.
struct Plan {
  int n, n1, m, bins;
  std::vector<int> reversed;                 // bit-reversed order of [0, n1)
  std::vector<float> stage_re, stage_im;     // exp(-2 pi i j / n1) for j < n1 / 2
  std::vector<float> combine_re, combine_im;  // exp(-2 pi i n2 k / n), [bins][m]

  explicit Plan(int size) : n(size), n1(1), bins(size / 2 + 1) {
    while (n % (2 * n1) == 0) n1 *= 2;
    m = n / n1;
    int bits = 0;
    while ((1 << bits) < n1) bits++;
    reversed.resize(n1);
    for (int i = 0; i < n1; i++) {
      int r = 0;
      for (int b = 0; b < bits; b++) r |= ((i >> b) & 1) << (bits - 1 - b);
      reversed[i] = r;
    }
    for (int j = 0; j < n1 / 2; j++) {
      stage_re.push_back(static_cast<float>(std::cos(-2 * M_PI * j / n1)));
      stage_im.push_back(static_cast<float>(std::sin(-2 * M_PI * j / n1)));
    }
    for (int k = 0; k < bins; k++) {
      for (int n2 = 0; n2 < m; n2++) {
        const double angle = -2 * M_PI * static_cast<double>((static_cast<int64_t>(n2) * k) % n) / n;
        combine_re.push_back(static_cast<float>(std::cos(angle)));
        combine_im.push_back(static_cast<float>(std::sin(angle)));
      }
    }
  }
};

// kLanes floats (int32s): one value of each of the frames that go through the FFT together. GCC's and Clang's
// vector extensions make these one AVX register where the target has AVX, two SSE registers where not.
typedef float Lanes __attribute__((vector_size(kLanes * sizeof(float))));
typedef int32_t IntLanes __attribute__((vector_size(kLanes * sizeof(int32_t))));

__attribute__((always_inline)) inline Lanes Load(const float *p) {  // (inlined: a vector by value
                                                                    // has another ABI in each clone)
  Lanes v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

__attribute__((always_inline)) inline void Store(float *p, Lanes v) { std::memcpy(p, &v, sizeof(v)); }

// In place, a radix-2 FFT of size plan.n1 of lanes of values in bit-reversed order (value v at v * kLanes).
__attribute__((target_clones("avx2", "default")))
void Radix2(const Plan &plan, float *re, float *im) {
  const int n1 = plan.n1;
  for (int half = 1; half < n1; half *= 2) {
    const int stride = n1 / (2 * half);  // twiddle j * stride of exp(-2 pi i / n1)
    for (int start = 0; start < n1; start += 2 * half) {
      for (int j = 0; j < half; j++) {
        const float wr = plan.stage_re[j * stride], wi = plan.stage_im[j * stride];
        const int a = (start + j) * kLanes, b = (start + j + half) * kLanes;
        const Lanes ar = Load(re + a), ai = Load(im + a), br = Load(re + b), bi = Load(im + b);
        const Lanes tr = br * wr - bi * wi, ti = br * wi + bi * wr;
        Store(re + a, ar + tr);
        Store(im + a, ai + ti);
        Store(re + b, ar - tr);
        Store(im + b, ai - ti);
      }
    }
  }
}

// log1p(x) of lanes of x >= 0: log(1 + x) by Cephes' logf (the exponent and a polynomial of the mantissa in
// [sqrt(1/2), sqrt(2)), 1-2 ulp), corrected by the rounding of 1 + x as log1p's implementations correct it.
__attribute__((always_inline)) inline Lanes Log1p(Lanes x) {
  const Lanes u = 1.0f + x;
  const IntLanes bits = reinterpret_cast<const IntLanes &>(u);
  IntLanes e = ((bits >> 23) & 0xff) - 126;
  const IntLanes mantissa_bits = (bits & 0x007fffff) | 0x3f000000;  // in [0.5, 1)
  const Lanes m = reinterpret_cast<const Lanes &>(mantissa_bits);
  const IntLanes low = m < 0.707106781186547524f;  // -1 where true
  e += low;
  const Lanes y = low ? m + m - 1.0f : m - 1.0f;
  const Lanes z = y * y;
  Lanes p = Lanes{} + 7.0376836292e-2f;
  p = p * y - 1.1514610310e-1f;
  p = p * y + 1.1676998740e-1f;
  p = p * y - 1.2420140846e-1f;
  p = p * y + 1.4249322787e-1f;
  p = p * y - 1.6668057665e-1f;
  p = p * y + 2.0000714765e-1f;
  p = p * y - 2.4999993993e-1f;
  p = p * y + 3.3333331174e-1f;
  const Lanes fe = __builtin_convertvector(e, Lanes);
  Lanes r = p * y * z + -2.12194440e-4f * fe - 0.5f * z;
  r = y + r + 0.693359375f * fe;
  return r - ((u - 1.0f) - x) / u;  // the rounding of 1 + x, taken back
}

// Bins [0, plan.bins) of kLanes frames: log1p of the magnitude, into out[bin][first + lane] for the lanes
// that are frames (`valid`). `frames` holds the windowed frames, [n][kLanes]; `re` and `im` are scratch.
__attribute__((target_clones("avx2", "default")))
void Transform(const Plan &plan, const float *frames, float *re, float *im, float *out, int out_frames, int first,
               int valid) {
  const int n1 = plan.n1, m = plan.m;
  const Lanes zero = {};
  for (int n2 = 0; n2 < m; n2++) {  // sub-sequence n2, in bit-reversed order, then its FFT
    float *sr = re + static_cast<int64_t>(n2) * n1 * kLanes, *si = im + static_cast<int64_t>(n2) * n1 * kLanes;
    for (int i = 0; i < n1; i++) {
      Store(sr + i * kLanes, Load(frames + (static_cast<int64_t>(plan.reversed[i]) * m + n2) * kLanes));
      Store(si + i * kLanes, zero);
    }
    Radix2(plan, sr, si);
  }
  for (int k = 0; k < plan.bins; k++) {
    Lanes sum_re = zero, sum_im = zero;
    const float *cr = &plan.combine_re[static_cast<size_t>(k) * m], *ci = &plan.combine_im[static_cast<size_t>(k) * m];
    for (int n2 = 0; n2 < m; n2++) {
      const int64_t at = (static_cast<int64_t>(n2) * n1 + k % n1) * kLanes;
      const Lanes yr = Load(re + at), yi = Load(im + at);
      sum_re += yr * cr[n2] - yi * ci[n2];
      sum_im += yr * ci[n2] + yi * cr[n2];
    }
    Lanes magnitude;
    const Lanes power = sum_re * sum_re + sum_im * sum_im;
    for (int l = 0; l < kLanes; l++) magnitude[l] = std::sqrt(power[l]);
    const Lanes value = Log1p(magnitude);
    float *row = out + static_cast<int64_t>(k) * out_frames + first;
    for (int l = 0; l < valid; l++) row[l] = value[l];
  }
}

}  // namespace

// A spectrogram's standardization as an affine map: (x - mean) / std, or x itself where the std is 0.
struct Standardize {
  float scale = 1.0f, offset = 0.0f;
};

// out[e] = a * x[e] + b * y[e] + c over a run of values: the blend of two standardized spectrograms, or one.
__attribute__((target_clones("avx2", "default")))
void BlendRun(const float *__restrict x, const float *__restrict y, float a, float b, float c, float *__restrict out,
              int64_t count) {
  for (int64_t e = 0; e < count; e++) out[e] = a * x[e] + b * y[e] + c;
}

class LogSpectrogram : public ::dali::StatelessOperator<::dali::CPUBackend> {
 public:
  explicit LogSpectrogram(const ::dali::OpSpec &spec)
      : ::dali::StatelessOperator<::dali::CPUBackend>(spec),
        window_(spec.GetRepeatedArgument<float>("window")),
        hop_(spec.GetArgument<int>("hop")),
        frames_(spec.GetArgument<int>("frames")),
        mixing_(spec.NumRegularInput() == 2),
        num_classes_(spec.GetArgument<int>("num_classes")),
        label_smoothing_(spec.GetArgument<float>("label_smoothing")),
        plan_(static_cast<int>(window_.size())) {
    DALI_ENFORCE(window_.size() >= 2 && window_.size() % 2 == 0, "the window needs an even length >= 2 (the FFT's)");
    DALI_ENFORCE(hop_ >= 1 && frames_ >= 1, "hop and frames must be >= 1");
    DALI_ENFORCE(!mixing_ || num_classes_ >= 1, "with labels, num_classes must be >= 1");
  }

 protected:
  bool SetupImpl(std::vector<::dali::OutputDesc> &output_desc, const ::dali::Workspace &ws) override {
    const auto &audio = ws.Input<::dali::CPUBackend>(0);
    const int n = audio.num_samples();
    DALI_ENFORCE(audio.type() == DALI_FLOAT, "LogSpectrogram takes float32 audio");
    DALI_ENFORCE(audio.sample_dim() == 1, "LogSpectrogram takes mono audio, one dimension");
    output_desc.resize(mixing_ ? 2 : 1);
    output_desc[0] = {::dali::uniform_list_shape(n, ::dali::TensorShape<3>{1, plan_.bins, frames_}), DALI_FLOAT};
    if (mixing_) {
      ReadMixing(ws, n);
      output_desc[1] = {::dali::uniform_list_shape(n, ::dali::TensorShape<1>{num_classes_}), DALI_FLOAT};
    }
    return true;
  }

  void RunImpl(::dali::Workspace &ws) override {
    const auto &audio = ws.Input<::dali::CPUBackend>(0);
    auto &out = ws.Output<::dali::CPUBackend>(0);
    out.SetLayout("CHW");
    auto &pool = ws.GetThreadPool();
    const int n = audio.num_samples();
    const int64_t values = static_cast<int64_t>(plan_.bins) * frames_;
    // Without mixing, each spectrogram is made in its output and standardized there. With it, the
    // spectrograms are made here first, and the standardization and the blend with the partner are one
    // pass that writes the output: the mixing costs the read of the partner's values.
    if (mixing_) features_.resize(n * values);
    standardize_.resize(n);
    for (int i = 0; i < n; i++) {
      pool.AddWork([&, i](int) {
        float *spectrogram = mixing_ ? features_.data() + i * values : out.mutable_tensor<float>(i);
        standardize_[i] = Clip(audio.tensor<float>(i), audio.tensor_shape(i)[0], spectrogram);
        if (!mixing_) {
          const Standardize s = standardize_[i];
          for (int64_t e = 0; e < values; e++) spectrogram[e] = s.scale * spectrogram[e] + s.offset;
        }
      }, audio.tensor_shape(i)[0]);
    }
    pool.RunAll();
    if (!mixing_) return;
    auto &targets = ws.Output<::dali::CPUBackend>(1);
    for (int i = 0; i < n; i++) {
      pool.AddWork([&, i](int) {
        MixSample(i, out.mutable_tensor<float>(i));
        Targets(i, targets.mutable_tensor<float>(i));
      }, values);
    }
    pool.RunAll();
  }

 private:
  // The log-magnitude spectrogram of a clip into `out` ([bins][frames]), and its standardization.
  Standardize Clip(const float *samples, int64_t length, float *out) const {
    const int n = plan_.n, bins = plan_.bins;
    const int64_t count = length / hop_ + 1;  // centred frames, as NumPy's reference counts them
    const int kept = static_cast<int>(std::min<int64_t>(count, frames_));
    std::fill(out, out + static_cast<int64_t>(bins) * frames_, 0.0f);  // frames past the clip's are 0
    std::vector<float> frames(static_cast<size_t>(n) * kLanes), re(frames.size()), im(frames.size());
    for (int first = 0; first < kept && length > 0; first += kLanes) {
      const int valid = std::min(kLanes, kept - first);
      for (int l = 0; l < kLanes; l++) {  // frame first + l, its samples reflected only where it crosses an end
        const int64_t start = static_cast<int64_t>(first + l) * hop_ - n / 2;
        const bool inside = start >= 0 && start + n <= length;
        for (int j = 0; j < n; j++) {
          const float sample = l >= valid ? 0.0f : inside ? samples[start + j] : samples[Reflect(start + j, length)];
          frames[j * kLanes + l] = sample * window_[j];
        }
      }
      Transform(plan_, frames.data(), re.data(), im.data(), out, frames_, first, valid);
    }
    // The mean and the unbiased std of every value, in double; a constant spectrogram is left as it is.
    const int64_t values = static_cast<int64_t>(bins) * frames_;
    double sum = 0;
    for (int64_t v = 0; v < values; v++) sum += out[v];
    const double mean = sum / values;
    double squares = 0;
    for (int64_t v = 0; v < values; v++) squares += (out[v] - mean) * (out[v] - mean);
    const double std = values > 1 ? std::sqrt(squares / (values - 1)) : 0.0;
    Standardize s;
    if (std > 0) s = {static_cast<float>(1.0 / std), static_cast<float>(-mean / std)};
    return s;
  }

  // Sample i mixed with its partner, standardized, into `out`: blended with lam outside its CutMix box (with
  // a box, its own values there), its partner's inside.
  void MixSample(int i, float *out) const {
    const int j = partner_[i], bins = plan_.bins;
    const int64_t values = static_cast<int64_t>(bins) * frames_;
    const float *x = features_.data() + i * values, *y = features_.data() + j * values;
    const Standardize &si = standardize_[i], &sj = standardize_[j];
    const int *box = &boxes_[4 * i];
    const bool cut = box[0] < box[2] && box[1] < box[3];
    const float lam = cut ? 1.0f : lam_[i];  // outside a box, a cut sample keeps its own values
    const float a = lam * si.scale, b = (1.0f - lam) * sj.scale, c = lam * si.offset + (1.0f - lam) * sj.offset;
    for (int row = 0; row < bins; row++) {
      const int64_t r = static_cast<int64_t>(row) * frames_;
      if (!cut || row < box[0] || row >= box[2]) {
        BlendRun(x + r, y + r, a, b, c, out + r, frames_);
        continue;
      }
      BlendRun(x + r, y + r, a, b, c, out + r, box[1]);
      BlendRun(x + r + box[1], y + r + box[1], 0.0f, sj.scale, sj.offset, out + r + box[1], box[3] - box[1]);
      BlendRun(x + r + box[3], y + r + box[3], a, b, c, out + r + box[3], frames_ - box[3]);
    }
  }

  // The smoothed one-hot rows of sample i and its partner, blended with lam.
  void Targets(int i, float *targets) const {
    const float off = label_smoothing_ / num_classes_, on = 1.0f - label_smoothing_ + off;
    for (int k = 0; k < num_classes_; k++) {
      float value = off;
      if (k == labels_[i]) value += lam_[i] * (on - off);
      if (k == labels_[partner_[i]]) value += (1.0f - lam_[i]) * (on - off);
      targets[k] = value;
    }
  }

  // The labels (input 1) and the mixing's lam, partner and box (argument inputs), checked.
  void ReadMixing(const ::dali::Workspace &ws, int n) {
    const auto &labels = ws.Input<::dali::CPUBackend>(1);
    DALI_ENFORCE(labels.type() == DALI_INT32, "labels must be int32");
    labels_.resize(n);
    for (int i = 0; i < n; i++) {
      DALI_ENFORCE(::dali::volume(labels.tensor_shape(i)) == 1, "one label a clip");
      labels_[i] = labels.tensor<int>(i)[0];
      DALI_ENFORCE(labels_[i] >= 0 && labels_[i] < num_classes_,
                   ::dali::make_string("label ", labels_[i], " of sample ", i, " is outside [0, ", num_classes_, ")"));
    }
    ::dali::GetPerSampleArgument<float>(lam_, "lam", this->spec_, ws, n);
    ::dali::GetPerSampleArgument<int>(partner_, "partner", this->spec_, ws, n);
    boxes_.assign(4 * n, 0);
    for (int i = 0; i < n; i++) {
      if (partner_[i] == -1) partner_[i] = i;
      DALI_ENFORCE(partner_[i] >= 0 && partner_[i] < n, "partner index out of range");
    }
    if (!this->spec_.HasTensorArgument("box")) return;
    const auto &boxes = ws.ArgumentInput("box");
    DALI_ENFORCE(boxes.type() == DALI_INT32, "box must be int32");
    for (int i = 0; i < n; i++) {
      const int *box = boxes.tensor<int>(i);
      DALI_ENFORCE(::dali::volume(boxes.tensor_shape(i)) == 4 && 0 <= box[0] && box[0] <= box[2] &&
                       box[2] <= plan_.bins && 0 <= box[1] && box[1] <= box[3] && box[3] <= frames_,
                   ::dali::make_string("the box of sample ", i, " is not [y0, x0, y1, x1) inside ", plan_.bins, "x",
                                       frames_));
      std::copy(box, box + 4, boxes_.begin() + 4 * i);
    }
  }

  std::vector<float> window_;
  int hop_, frames_;
  bool mixing_;
  int num_classes_;
  float label_smoothing_;
  Plan plan_;
  std::vector<float> features_, lam_;
  std::vector<Standardize> standardize_;
  std::vector<int> labels_, partner_, boxes_;
};

}  // namespace dali_mixup

DALI_REGISTER_OPERATOR(LogSpectrogram, ::dali_mixup::LogSpectrogram, ::dali::CPU);

DALI_SCHEMA(LogSpectrogram)
    .DocStr(R"(Standardized log-magnitude spectrograms of mono float32 clips, [1, len(window) / 2 + 1, frames]:
frames centred every `hop` samples (the clip reflected at its ends), windowed, their magnitude spectrum, log1p,
the time axis cut or zero-padded to `frames`, then (x - mean) / std over the whole (unbiased std; unchanged
where it is 0). With the labels as a second input, each is also mixed with its `partner` (lam, or a CutMix
`box` [y0, x0, y1, x1) of bins and frames where the partner's values are taken), and the second output is
the targets: the smoothed one-hot rows blended with lam.)")
    .NumInput(1, 2)
    .InputDevice(1, ::dali::InputDevice::CPU)
    .OutputFn([](const ::dali::OpSpec &spec) { return spec.NumRegularInput(); })
    .AddArg("window", "The window, its length the FFT's (even).", DALI_FLOAT_VEC)
    .AddArg("hop", "Samples between frames.", DALI_INT32)
    .AddArg("frames", "Frames kept (zero frames added after a short clip).", DALI_INT32)
    .AddOptionalArg("lam", "With labels: the weight of each clip's own values and label.", 1.0f, true)
    .AddOptionalArg("partner", "With labels: each clip's partner in the batch; -1 (itself) by default.", -1, true)
    .AddOptionalArg("box", "With labels: a CutMix box [y0, x0, y1, x1) of bins and frames a clip; empty: blend.",
                    std::vector<int>(), true)
    .AddOptionalArg("num_classes", "With labels: the targets' classes.", 0)
    .AddOptionalArg("label_smoothing", "With labels: the one-hot rows' smoothing.", 0.0f);
