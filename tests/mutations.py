"""The checks that guard the documented promises, each with a mutation of the code it was seen to catch.

    python tests/mutations.py [--only WORD] [--list | --markdown]

For every entry, the mutation (one textual change to one file) is applied, the named tests run,
and the file is put back: a test run that passes on the broken code is reported as MISSED, and the
command exits with status 1. This is slow (a few minutes per ten mutations) and is not part of
``make test``; ``tests/test_mutations.py`` checks, quickly, that every mutation still applies to
the code as it is, so this list cannot silently rot. docs/testing.md lists them (`--markdown` prints its table).
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# (promise, file, original text, mutated text, pytest arguments)
MUTATIONS = [
    # ---- the operator and its reference ----
    ("mixup matches the reference", "dali_mixup/mixup.py",
     "    targets = lam * one_hot + (1 - lam) * fn.permute_batch(one_hot, indices=perm)",
     "    targets = lam * one_hot + (1 - lam) * one_hot", ["tests/test_mixup.py", "-k", "matches_reference"]),
    ("λ follows Beta(α, α)", "dali_mixup/mixup.py",
     "        lam = once(fn.random.beta(alpha=float(mixing.alpha), beta=float(mixing.alpha)))",
     "        lam = once(fn.random.beta(alpha=float(mixing.alpha), beta=float(mixing.alpha) * 2))",
     ["tests/test_mixup.py", "-k", "follows_beta"]),
    ("a train loader really mixes (≥ half the rows soft at α = 1)", "dali_mixup/mixup.py",
     "        lam = once(fn.random.beta(alpha=float(mixing.alpha), beta=float(mixing.alpha)))",
     "        lam = once(fn.random.beta(alpha=float(mixing.alpha) * 0.02, beta=float(mixing.alpha) * 0.02))",
     ["tests/test_loader.py", "-k", "test_train_batches and imagefolder"]),
    ("the train pipelines use the fused operator", "dali_mixup/mixup.py",
     "        if images.device in fused_backends():", "        if images.device in fused_backends() and False:",
     ["tests/test_loader.py", "-k", "with_the_fused_operator"]),
    ("the demo grid shows mixed photos", "dali_mixup/show.py",
     "    return mixup(images, labels, num_classes=len(photos), alpha=alpha,",
     "    return mixup(images, labels, num_classes=len(photos), alpha=0.0 * alpha,", ["tests/test_show.py"]),
    # ---- the fused operator's CUDA backend, run on the host ----
    ("fp16 rounds to nearest (half an ulp)", "dali_mixup/csrc/blend_kernel.h",
     "DALI_HOST_DEV inline void Store(__half *out, float v) { *out = __float2half_rn(v); }",
     "DALI_HOST_DEV inline void Store(__half *out, float v) { *out = __float2half_rz(v); }",
     ["tests/test_fused.py", "-k", "run_on_the_host"]),
    ("the blend is computed in float32", "dali_mixup/csrc/blend_kernel.h",
     "    v[e] = (in ? s.inside.a[c] : s.outside.a[c]) * xi[e] + (in ? s.inside.b[c] : s.outside.b[c]) * xj[e] +",
     "    v[e] = __half2float(__hmul(__float2half_rn(in ? s.inside.a[c] : s.outside.a[c]), __float2half_rn(float(xi[e]))))"
     " + __half2float(__hmul(__float2half_rn(in ? s.inside.b[c] : s.outside.b[c]), __float2half_rn(float(xj[e])))) +",
     ["tests/test_fused.py", "-k", "run_on_the_host"]),
    ("the wide path needs 16-byte (float) or 8-byte (half) output", "dali_mixup/csrc/blend_kernel.h",
     "!aligned(samples[i].out, kGroup * out_size)", "!aligned(samples[i].out, 8)",
     ["tests/test_fused.py", "-k", "run_on_the_host"]),
    ("the wide path needs 4-byte input", "dali_mixup/csrc/blend_kernel.h",
     "!aligned(samples[i].self, 4) || !aligned(samples[i].partner, 4)",
     "!aligned(samples[i].self, 2) || !aligned(samples[i].partner, 2)", ["tests/test_fused.py", "-k", "run_on_the_host"]),
    ("the partner is flipped by its own flag", "dali_mixup/csrc/blend_kernel.h",
     "{0, 0, 0, 0}, lam[i], mirror[i], mirror[j]};", "{0, 0, 0, 0}, lam[i], mirror[i], mirror[i]};",
     ["tests/test_fused.py", "-k", "run_on_the_host"]),
    ("each sample takes its own λ", "dali_mixup/csrc/blend_kernel.h",
     "labels[j], MakeBlend(lam[i], mean, std),", "labels[j], MakeBlend(lam[j], mean, std),",
     ["tests/test_fused.py", "-k", "run_on_the_host"]),
    ("the targets kernel blends the smoothed rows", "dali_mixup/csrc/blend_kernel.h",
     "    if (k == s.label_partner) value += (1.0f - s.lam) * (on - off);",
     "    if (k == s.label_partner) value += (1.0f - s.lam) * on;", ["tests/test_fused.py", "-k", "run_on_the_host"]),
    ("the grid-stride loop covers every group", "dali_mixup/csrc/blend_kernel.h",
     "  for (int group = thread; group < groups; group += threads) BlendGroup",
     "  for (int group = thread; group < groups; group += threads + 1) BlendGroup",
     ["tests/test_fused.py", "-k", "run_on_the_host"]),
    ("a mirrored group is read from its mirror image", "dali_mixup/csrc/blend_kernel.h",
     "    const int xs = flip ? width - kGroup - x0 : x0;", "    const int xs = flip ? width - kGroup - x0 + 1 : x0;",
     ["tests/test_fused.py", "-k", "run_on_the_host"]),
    # ---- CutMix and the crop policies ----
    ("CutMix boxes follow timm's rand_bbox", "dali_mixup/csrc/mixup_draws.cc",
     "      low[a] = std::clamp(centre - std::floor(cut * 0.5f), 0.0f, size);",
     "      low[a] = std::clamp(centre - std::floor(cut * 0.34f), 0.0f, size);",
     ["tests/test_cutmix.py", "-k", "area_law"]),
    ("correct_lam makes λ the share of own pixels", "dali_mixup/csrc/mixup_draws.cc",
     "  const float cut_lam = correct_lam || minmax != nullptr ? 1.0f - area : d.cut_lam;",
     "  const float cut_lam = minmax != nullptr ? 1.0f - area : d.cut_lam;",
     ["tests/test_cutmix.py", "-k", "area_law"]),
    ("prob's coin leaves a sample alone", "dali_mixup/csrc/mixup_draws.cc",
     "      cut *= d.apply;\n      blend *= d.apply;", "      blend *= d.apply;",
     ["tests/test_cutmix.py", "-k", "prob_mixes_that_share"]),
    ("batch mode gives every sample the first's draws", "dali_mixup/csrc/mixup_draws.cc",
     "mode_ == kPairMode ? std::min(i, n - 1 - i) : 0;", "mode_ == kPairMode ? std::min(i, n - 1 - i) : i;",
     ["tests/test_cutmix.py", "-k", "matches_the_reference and cpu and fused"]),
    ("the graph's CutMix (the fallback) is the plugin's law", "dali_mixup/mixup.py",
     "        low = dmath.clamp(centre - dmath.floor(cut * 0.5), 0.0, size)",
     "        low = dmath.clamp(centre - dmath.floor(cut * 0.34), 0.0, size)",
     ["tests/test_cutmix.py", "-k", "graphs_arithmetic"]),
    ("a CutMix box takes the partner's pixels", "dali_mixup/csrc/blend_kernel.h",
     "         MakeBlend(0.0f, mean, std), {0, 0, 0, 0}, lam[i], mirror[i], mirror[j]};",
     "         MakeBlend(1.0f, mean, std), {0, 0, 0, 0}, lam[i], mirror[i], mirror[j]};",
     ["tests/test_cutmix.py", "-k", "matches_the_reference and cpu"]),
    ("a CutMix sample keeps its own pixels outside the box", "dali_mixup/csrc/blend_kernel.h",
     "      d.outside = MakeBlend(1.0f, mean, std);  // CutMix: its own pixels outside the box",
     "      d.outside = MakeBlend(lam[i], mean, std);", ["tests/test_fused.py", "-k", "run_on_the_host"]),
    ("the CPU backend's box covers its last column", "dali_mixup/csrc/mixup_normalize.cc",
     "      inside.Apply(row_i, row_j, dst, s.box[1], s.box[3]);",
     "      inside.Apply(row_i, row_j, dst, s.box[1], s.box[3] - 1);",
     ["tests/test_cutmix.py", "-k", "matches_the_reference and cpu and fused"]),
    ("pair mode draws once for each pair (i, B - 1 - i)", "dali_mixup/mixup.py",
     "            return fn.permute_batch(node, indices=firsts)", "            return node",
     ["tests/test_cutmix.py", "-k", "pairs_mix"]),
    ("switch_prob is the probability of CutMix", "dali_mixup/mixup.py",
     'draws["switch"] = fn.random.coin_flip(probability=mixing.switch_prob, dtype=types.INT32)',
     'draws["switch"] = fn.random.coin_flip(probability=1 - mixing.switch_prob, dtype=types.INT32)',
     ["tests/test_cutmix.py", "-k", "switch"]),
    ("the fallback cuts the whole box", "dali_mixup/mixup.py",
     '    outside = fn.erase(mixed * 0 + 1, anchor=corner, shape=size, axis_names="HW", fill_value=0)',
     '    outside = fn.erase(mixed * 0 + 1, anchor=corner, shape=size * 0.5, axis_names="HW", fill_value=0)',
     ["tests/test_cutmix.py", "-k", "matches_the_reference and cpu and fallback"]),
    ("the reference pastes the partner's box, as timm", "dali_mixup/reference.py",
     "            mixed[i][region] = x[perm[i]][region]", "            mixed[i][region] = x[i][region]",
     ["tests/test_cutmix.py", "-k", "timm"]),
    ("const erasing fills 0 once normalized, as timm's", "pipelines/augment.py",
     'return fn.erase(images, anchor=anchor, shape=shape, axis_names="HW", fill_value=0.0)',
     'return fn.erase(images, anchor=anchor, shape=shape, axis_names="HW", fill_value=0.5)',
     ["tests/test_augment.py", "-k", "fills_its_boxes and const and cpu"]),
    ("random erasing boxes are at most a third of the image", "pipelines/augment.py",
     "    area = (0.02, 1 / 3)", "    area = (0.02, 2 / 3)", ["tests/test_augment.py", "-k", "erasings_boxes"]),
    ("re_count erases 1 to recount boxes", "pipelines/augment.py",
     "values=list(range(1, self.count + 1)), dtype=types.INT32)", "values=[self.count], dtype=types.INT32)",
     ["tests/test_augment.py", "-k", "erasings_boxes"]),
    ("pixel erasing is N(0, 1) once normalized", "pipelines/augment.py",
     "patch = fn.random.normal(shape=fn.stack(height[k], width[k], 3), device=images.device)",
     "patch = fn.random.normal(shape=fn.stack(height[k], width[k], 3), device=images.device) * 0.5",
     ["tests/test_augment.py", "-k", "fills_its_boxes and pixel and cpu"]),
    ("timm's RandAugment applies each chosen op with probability p", "pipelines/auto_augment.py",
     "applied = fn.random.coin_flip(probability=self.prob, dtype=types.INT32)",
     "applied = fn.random.coin_flip(probability=1.0, dtype=types.INT32)",
     ["tests/test_rand_augment.py", "-k", "draws_follow"]),
    ("timm's RandAugment adds mstd's noise to the magnitude", "pipelines/auto_augment.py",
     "level = fn.random.normal(mean=float(self.magnitude), stddev=float(self.magnitude_std))",
     "level = fn.random.normal(mean=float(self.magnitude), stddev=float(self.magnitude_std) * 0.5)",
     ["tests/test_rand_augment.py", "-k", "draws_follow"]),
    ("timm's Solarize threshold", "pipelines/auto_augment.py",
     "return _solarize_at(data, dmath.min(256.0, dmath.floor(level * 256.0 / 10.0)))",
     "return _solarize_at(data, dmath.min(256.0, dmath.floor(level * 200.0 / 10.0)))",
     ["tests/test_rand_augment.py", "-k", "each_op and cpu"]),
    ("color jitter applies its ops in a random order", "pipelines/augment.py",
     "order = orders[fn.random.uniform(values=list(range(math.factorial(len(on)))), dtype=types.INT32)]",
     "order = orders[fn.random.uniform(values=[0], dtype=types.INT32)]",
     ["tests/test_augment.py", "-k", "factors_and_order"]),
    ("repeated augmentation is timm's RepeatAugSampler", "dali_mixup/epochs.py",
     "        repeated = np.repeat(order, int(repeats))", "        repeated = np.tile(order, int(repeats))",
     ["tests/test_repeated_augmentation.py", "-k", "repeat_aug_samplers"]),
    ("val's crop_pct is timm's", "pipelines/augment.py",
     "    return math.floor(crop_size / crop_pct + 1e-9)", "    return round(crop_size / crop_pct)",
     ["tests/test_augment.py", "-k", "crop_pct"]),
    ("--bce-target-thresh binarizes as timm's", "train/trainer.py",
     "            targets = (targets > threshold).to(targets.dtype)", "            targets = targets",
     ["tests/test_train.py", "-k", "bce"]),
    # ---- the build ----
    ("a failed build names its cause", "dali_mixup/build.py", "        cause = failure_cause(err)",
     "        cause = str(err).strip().splitlines()[-1]", ["tests/test_fused.py", "-k", "compile or compiler"]),
    ("the build key covers the architectures", "dali_mixup/build.py",
     '''    digest.update(json.dumps({"compiler": compiler, "nvcc": toolchain.nvcc, "flags": flags}, sort_keys=True).encode())''',
     '''    digest.update(json.dumps({"compiler": compiler, "nvcc": toolchain.nvcc}, sort_keys=True).encode())''',
     ["tests/test_fused.py", "-k", "key_changes"]),
    # ---- the GPU graphs, made without a GPU ----
    ("every GPU pipeline is a valid DALI graph", "pipelines/augment.py",
     "            shape = images.shape(dtype=types.INT32)", "            shape = fn.shapes(images, dtype=types.INT32)",
     ["tests/test_gpu_graphs.py"]),
    # ---- the loader: torchvision parity ----
    ("ImageFolder is recursive, as torchvision's", "dali_mixup/formats.py",
     "    if not nested:\n", "    if True:\n", ["tests/test_parity.py", "-k", "finds_what"]),
    ("ImageFolder follows symlinks, as torchvision's", "dali_mixup/formats.py",
     "for parent, _, files in sorted(os.walk(folder, followlinks=True))]",
     "for parent, _, files in sorted(os.walk(folder))]",
     ["tests/test_parity.py", "-k", "finds_what"]),
    ("val equals torchvision's eval transform (antialiased resize)", "dali_mixup/csrc/resample.h",
     "  const double filterscale = scale < 1.0 ? 1.0 : scale;", "  const double filterscale = 1.0;",
     ["tests/test_loader.py", "-k", "torchvision"]),
    ("the resize is Pillow's to the bit (its weights' rounding)", "dali_mixup/csrc/resample.h",
     "static_cast<int32_t>(k[x] < 0 ? -0.5 + scaled : 0.5 + scaled);", "static_cast<int32_t>(scaled);",
     ["tests/test_resize.py", "-k", "to_the_bit"]),
    ("the resize takes Pillow 13's order of the passes", "dali_mixup/csrc/resample.h",
     "  return shrink_height > 0 && shrink_height > shrink_width * 2;", "  return false;",
     ["tests/test_resize.py", "-k", "to_the_bit"]),
    ("the CPU backend's vertical pass rounds as Pillow's", "dali_mixup/csrc/mixup_normalize.cc",
     "    for (int64_t e = 0; e < values; e++) sums[e] = 1 << (kPrecisionBits - 1);",
     "    for (int64_t e = 0; e < values; e++) sums[e] = 0;",
     ["tests/test_resize.py", "-k", "same_box and cpu"]),
    ("a val window is the center of the whole resize", "pipelines/augment.py",
     "offset = fn.stack(_int32(corner_y), _int32(corner_x))", "offset = fn.stack(_int32(corner_x), _int32(corner_y))",
     ["tests/test_loader.py", "-k", "torchvision"]),
    ("val's center crop is torchvision's, to the pixel (nearest: fn.resize's window)", "pipelines/augment.py",
     "dtype=types.FLOAT) + 0.25", "dtype=types.FLOAT) + 1.25", ["tests/test_parity.py", "-k", "nearest_val"]),
    ("val's center crop is torchvision's, to the pixel (the fused resize's window)", "pipelines/augment.py",
     "    return inside * _round_half_even(dmath.max(slack, 0)) - ",
     "    return inside * ((dmath.max(slack, 0) + 1) // 2) - ", ["tests/test_parity.py", "-k", "sample_for_sample"]),
    ("EXIF orientation is off by default", "dali_mixup/loader.py", "    adjust_orientation=False,\n    channels_last",
     "    adjust_orientation=True,\n    channels_last", ["tests/test_parity.py", "-k", "orientation"]),
    ("adjust_orientation reaches the train decoder", "pipelines/augment.py",
     "output_type=types.RGB,\n                                           adjust_orientation=self.adjust_orientation, **_decoder",
     "output_type=types.RGB,\n                                           **_decoder", ["tests/test_parity.py", "-k", "orientation"]),
    ("every iter() is a full fresh epoch", "dali_mixup/loader.py", '        elif self._state == "reading":',
     "        elif False:", ["tests/test_parity.py", "-k", "fresh or stale"]),
    ("a CPU run prints no CUDA warning", "dali_mixup/build.py", "    toolchain = find_toolchain(cpu_only)\n",
     "    from torch.utils import cpp_extension\n    toolchain = find_toolchain(cpu_only)\n",
     ["tests/test_loader.py", "-k", "no_cuda_warning"]),
    ("a world of several ranks without a rank is an error", "dali_mixup/loader.py", "        elif world_size == 1:",
     "        elif True:", ["tests/test_loader.py", "-k", "without_a_rank"]),
    ("the rank comes from the process group first", "dali_mixup/loader.py", "            rank = group[0]\n",
     "            rank = _env_int(\"RANK\", 0)\n", ["tests/test_loader.py", "-k", "process_group_first"]),
    ("mixup_enabled = False stops the mixing", "dali_mixup/loader.py", "            self._state = \"rebuild\"",
     "            pass", ["tests/test_loader.py", "-k", "mixup_enabled"]),
    ("check_data survives a decoder that dies, names the file and goes on", "dali_mixup/check_data.py",
     "                bad += self._file_by_file(crashed)\n", "                raise RuntimeError('the decoder died')\n",
     ["tests/test_bad_input.py", "-k", "kills_the_decoder"]),
    ("check_data sniffs before it decodes", "dali_mixup/check_data.py",
     "        why = None if audio else formats.sniff_bytes(blob[:16], blob[-64:])", "        why = None",
     ["tests/test_bad_input.py", "-k", "every_kind_of_broken"]),
    ("the loader sniffs every sample before DALI, which would crash on an empty one", "pipelines/sources.py",
     "            if why:\n                broken.append", "            if False:\n                broken.append",
     ["tests/test_bad_input.py", "-k", "never_a_crash"]),
    ("a file that sniffs clean but does not decode is named by the loader", "pipelines/sources.py",
     "        if not bad:\n            from dali_mixup.check_data", "        if False:\n            from dali_mixup.check_data",
     ["tests/test_bad_input.py", "-k", "sniffs_clean"]),
    ("a restored loader goes on exactly (DALI's checkpoint restored)", "dali_mixup/loader.py",
     "        self._build(state[\"checkpoint\"])", "        self._build()",
     ["tests/test_loader_state.py", "-k", "goes_on_exactly and imagefolder"]),
    ("a restored loader goes on from its place in the epoch", "dali_mixup/loader.py",
     "            self._state = \"resumed\"\n", "            self._state = \"fresh\"\n",
     ["tests/test_loader_state.py", "-k", "goes_on_exactly and filelist"]),
    ("a signal saves inside the epoch and the resume is step for step", "train/trainer.py",
     "            loader.load_state_dict(state[\"loaders\"][rank])\n", "            pass\n",
     ["tests/test_preemption.py", "-k", "sigterm"]),
    ("the ranks agree on the step a signal stops them", "train/preemption.py",
     "        if stop and not self.signal:", "        if False:", ["tests/test_preemption.py", "-k", "one_rank"]),
    ("the metrics file says what the checkpoint holds", "train/trainer.py",
     "            f.writelines(json.dumps(row) + \"\\n\" for row in rows)", "            pass",
     ["tests/test_preemption.py", "-k", "keeps_the_metrics"]),
    ("a finished run is left alone", "train/trainer.py", "    if state and start_epoch >= config.epochs and not position:",
     "    if False:", ["tests/test_preemption.py", "-k", "finished"]),
    ("a failed save removes its .tmp", "train/checkpoint.py",
     "    except OSError as err:\n        with contextlib.suppress(OSError):\n            os.remove(tmp)",
     "    except OSError as err:\n        with contextlib.suppress(OSError):\n            pass",
     ["tests/test_preemption.py", "-k", "failed_save"]),
    # ---- the epoch order: exact shards in every epoch, val exact with no empty batch ----
    ("train shards are disjoint in every epoch", "dali_mixup/epochs.py",
     "[rank : per_rank * world_size : world_size]", "[rank : per_rank * world_size : 1]",
     ["tests/test_exact_sharding.py", "-k", "disjoint"]),
    ("the shares are DistributedSampler's", "dali_mixup/epochs.py", "generator.manual_seed(seed + epoch)",
     "generator.manual_seed(seed + epoch + 1)", ["tests/test_exact_sharding.py", "-k", "distributed_sampler"]),
    ("no val batch is empty", "dali_mixup/epochs.py",
     "    return sizes[:-1] + [batch_size - batch_size // 2, batch_size // 2]", "    return sizes + [0]",
     ["tests/test_exact_sharding.py", "-k", "val_is"]),
    ("set_epoch chooses the epoch", "dali_mixup/loader.py", "        self._next_epoch = int(epoch)",
     "        self._next_epoch = self._next_epoch", ["tests/test_exact_sharding.py", "-k", "set_epoch"]),
    ("pad_crop moves an image by at most 4 pixels", "pipelines/augment.py", "    pad: int = 4", "    pad: int = 6",
     ["tests/test_parity.py", "-k", "pad_crop"]),
    ("pad_crop fills with zeros", "pipelines/augment.py", 'out_of_bounds_policy="pad", fill_values=0)',
     'out_of_bounds_policy="pad", fill_values=10)', ["tests/test_parity.py", "-k", "pad_crop"]),
    # ---- the trainer ----
    ("a log line is one write (ranks share a pipe)", "train/trainer.py",
     '    sys.stdout.write(" ".join(map(str, parts)) + "\\n")', "    print(*parts)",
     ["tests/test_train.py", "-k", "log_line_is_one_write"]),
    ("a resume restores the momentum", "train/checkpoint.py", '    optimizer.load_state_dict(state["optimizer"])\n',
     "", ["tests/test_train.py", "-k", "restores"]),
    ("a resume restores this rank's RNG", "train/checkpoint.py",
     '    set_rng_state(state["rng"][rank] if rank < len(state["rng"]) else state["rng"][0])',
     '    set_rng_state(state["rng"][0])', ["tests/test_train.py", "-k", "restores"]),
    ("a resume restores the weights", "train/checkpoint.py", '    model.load_state_dict(state["model"])\n', "",
     ["tests/test_train.py", "-k", "resume_continues"]),
    ("a GPU's RNG is saved alone (fewer GPUs at resume)", "train/checkpoint.py",
     '        state["cuda"] = torch.cuda.get_rng_state()', '        state["cuda"] = torch.cuda.get_rng_state_all()',
     ["tests/test_train.py", "-k", "gpu_rng"]),
    ("--corrupt-labels corrupts exactly that fraction", "train/trainer.py",
     "    noisy[picked] = (noisy[picked] + rng.integers(1, num_classes, size=len(picked))) % num_classes",
     "    noisy[picked[:0]] = 0", ["tests/test_train.py", "-k", "corrupted"]),
    ("one train pipeline is alive at a time", "train/trainer.py",
     "            loader = None  # one train pipeline at a time", "            pass  # one train pipeline at a time",
     ["tests/test_train.py", "-k", "one_train_pipeline"]),
    # ---- the layers ----
    ("importing a pipeline runs neither the loader nor torch", "dali_mixup/__init__.py",
     '__all__ = ["make_loader", "mixup", "mixup_reference"]',
     'from dali_mixup.reference import mixup_reference  # noqa\n__all__ = ["make_loader", "mixup", "mixup_reference"]',
     ["tests/test_mixup.py", "-k", "one_way"]),
    # ---- the documentation ----
    ("the README's example runs", "README.md",
     "                    mixup_alpha=0.2)", "                    mixup_alpha=-0.2)",
     ["tests/test_docs.py", "-k", "README"]),
    ("the docs' links lead somewhere", "docs/loader.md", "([the operator](operator.md#the-fused-operator))",
     "([the operator](#the-fused-operator))", ["tests/test_docs.py", "-k", "link"]),
    # ---- speech ----
    ("the plugin's FFT is the spectrogram's", "dali_mixup/csrc/log_spectrogram.cc",
     "        const double angle = -2 * M_PI * static_cast<double>((static_cast<int64_t>(n2) * k) % n) / n;",
     "        const double angle = 2 * M_PI * static_cast<double>((static_cast<int64_t>(n2) * k) % n) / n;",
     ["tests/test_speech.py", "-k", "numpy_reference and plugin"]),
    ("the plugin's log1p is log1p", "dali_mixup/csrc/log_spectrogram.cc",
     "  p = p * y - 2.4999993993e-1f;", "  p = p * y - 2.5999993993e-1f;",
     ["tests/test_speech.py", "-k", "numpy_reference and plugin"]),
    ("the plugin reflects the clip at its ends", "dali_mixup/csrc/log_spectrogram.cc",
     "  return i < length ? i : period - i;", "  return i < length ? i : length - 1;",
     ["tests/test_speech.py", "-k", "numpy_reference and plugin"]),
    ("the plugin's speech CutMix keeps the sample's own values outside the box", "dali_mixup/csrc/log_spectrogram.cc",
     "    const float lam = cut ? 1.0f : lam_[i];", "    const float lam = lam_[i];",
     ["tests/test_speech.py", "-k", "standardizing_pass"]),
    ("the plugin's speech mixing blends standardized spectrograms", "dali_mixup/csrc/log_spectrogram.cc",
     "c = lam * si.offset + (1.0f - lam) * sj.offset;", "c = lam * si.offset;",
     ["tests/test_speech.py", "-k", "standardizing_pass"]),
    ("spectrograms equal the NumPy reference (unbiased std)", "pipelines/speech.py",
     "    std = fn.reductions.std_dev(spectrogram, mean, ddof=1)", "    std = fn.reductions.std_dev(spectrogram, mean)",
     ["tests/test_speech.py", "-k", "numpy_reference and cpu-graph"]),
    ("spectrograms use the periodic Hamming window", "pipelines/speech.py",
     "np.cos(2 * np.pi * np.arange(WINDOW) / WINDOW)", "np.cos(2 * np.pi * np.arange(WINDOW) / (WINDOW - 1))",
     ["tests/test_speech.py", "-k", "numpy_reference and cpu-graph"]),
    ("spectrograms are log1p of the magnitude", "pipelines/speech.py",
     "    spectrogram = dmath.log(spectrogram + 1.0)", "    spectrogram = dmath.log(spectrogram + 1e-6)",
     ["tests/test_speech.py", "-k", "numpy_reference and cpu-graph"]),
    ("silence stays 0, not NaN", "pipelines/speech.py", "    spread = fn.cast(std > 0, dtype=types.FLOAT)",
     "    spread = fn.cast(std >= 0, dtype=types.FLOAT)", ["tests/test_speech.py", "-k", "numpy_reference and cpu-graph"]),
    ("stereo clips are downmixed", "pipelines/speech.py", "downmix=True, sample_rate=SAMPLE_RATE)",
     "downmix=False, sample_rate=SAMPLE_RATE)", ["tests/test_speech.py", "-k", "numpy_reference and cpu-graph"]),
    ("the splits are torchaudio's (train: every clip in neither list)", "dali_mixup/formats.py",
     "        chosen = sorted(clips.keys() - lists[\"val\"].keys() - lists[\"test\"].keys())",
     "        chosen = sorted(clips.keys() - lists[\"val\"].keys())", ["tests/test_speech.py", "-k", "torchaudio"]),
    ("a truncated WAV is named", "dali_mixup/formats.py", "    if offset + length > size:",
     "    if offset + length > size + 1_000_000:", ["tests/test_speech.py", "-k", "truncated"]),
    ("speech targets are mixed in the graph (GPU, no plugin)", "pipelines/speech.py",
     "                                  **dataclasses.asdict(mixing), **cutmix)",
     "                                  **dataclasses.asdict(dataclasses.replace(mixing, alpha=0.0)), **cutmix)",
     ["tests/test_speech.py", "-k", "train_loader_mixes and graph"]),
    ("speech targets are mixed in the plugin (CPU)", "pipelines/speech.py",
     "_decode(encoded), fn.cast(labels, dtype=types.INT32), lam=lam, partner=perm,",
     "_decode(encoded), fn.cast(labels, dtype=types.INT32), lam=lam * 0.0 + 1.0, partner=perm,",
     ["tests/test_speech.py", "-k", "train_loader_mixes and plugin"]),
    ("the speech recipe warms the lr up", "train/config.py",
     "opt=\"adam\", weight_decay=0.0, warmup_epochs=1,", "opt=\"adam\", weight_decay=0.0, warmup_epochs=0,",
     ["tests/test_train.py", "-k", "speech_recipe"]),
]


def apply(path, original, mutated):
    """Replace the first ``original`` in ``path`` with ``mutated``; raise if it is not there."""
    with open(path) as f:
        text = f.read()
    if original not in text:
        raise ValueError(f"{path}: the text to mutate is not there any more: {original!r}")
    with open(path, "w") as f:
        f.write(text.replace(original, mutated, 1))


def run(mutation):
    """``True`` when the tests fail on the mutated code (the mutation is caught); the file is restored."""
    _, relative, original, mutated, tests = mutation
    path = os.path.join(ROOT, relative)
    with tempfile.TemporaryDirectory() as folder:
        backup = os.path.join(folder, "backup")
        shutil.copy2(path, backup)
        try:
            apply(path, original, mutated)
            result = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests],
                                    cwd=ROOT, capture_output=True, text=True)
        finally:
            shutil.copy2(backup, path)
    return result.returncode != 0


def _short(text, width=67):
    text = " ".join(text.split()).replace("|", "\\|")  # a pipe would end the table's cell
    return "(deleted)" if not text else text if len(text) <= width else text[:width] + "..."


def markdown():
    """docs/testing.md's table of the promises and their mutations."""
    rows = ["| promise | mutation caught |", "| --- | --- |"]
    for promise, path, original, mutated, _ in MUTATIONS:
        rows.append(f"| {promise} | `{path}`: `{_short(original)}` → `{_short(mutated)}` |".replace("`(deleted)`",
                                                                                                   "(deleted)"))
    return "\n".join(rows)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="run the mutations whose promise contains this word")
    parser.add_argument("--list", action="store_true", help="print the promises and files, run nothing")
    parser.add_argument("--markdown", action="store_true", help="print docs/testing.md's table of them, run nothing")
    args = parser.parse_args(argv)
    if args.markdown:
        print(markdown())
        return
    chosen = [m for m in MUTATIONS if args.only is None or args.only.lower() in m[0].lower()]
    missed = []
    for mutation in chosen:
        if args.list:
            print(f"{mutation[0]}  ({mutation[1]})")
            continue
        caught = run(mutation)
        print(f"{'caught' if caught else 'MISSED'}: {mutation[0]}", flush=True)
        if not caught:
            missed.append(mutation[0])
    sys.exit(1 if missed else 0)


if __name__ == "__main__":
    main()
