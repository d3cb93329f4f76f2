"""The checks that guard the README's promises, each with a mutation of the code it was seen to catch.

    python tests/mutations.py [--only WORD] [--list]

For every entry, the mutation (one textual change to one file) is applied, the named tests run,
and the file is put back: a test run that passes on the broken code is reported as MISSED, and the
command exits with status 1. This is slow (a few minutes per ten mutations) and is not part of
``make test``; ``tests/test_mutations.py`` checks, quickly, that every mutation still applies to
the code as it is, so this list cannot silently rot. The README's test section is this list.
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
     "    lam = fn.random.beta(alpha=float(alpha), beta=float(alpha))",
     "    lam = fn.random.beta(alpha=float(alpha), beta=float(alpha) * 2)",
     ["tests/test_mixup.py", "-k", "follows_beta"]),
    ("a train loader really mixes (≥ half the rows soft at α = 1)", "dali_mixup/mixup.py",
     "    lam = fn.random.beta(alpha=float(alpha), beta=float(alpha))",
     "    lam = fn.random.beta(alpha=float(alpha) * 0.02, beta=float(alpha) * 0.02)",
     ["tests/test_loader.py", "-k", "test_train_batches and imagefolder"]),
    ("the train pipelines use the fused operator", "dali_mixup/mixup.py",
     "        if images.device in fused_backends():", "        if images.device in fused_backends() and False:",
     ["tests/test_loader.py", "-k", "fused_operator"]),
    ("the demo grid shows mixed photos", "dali_mixup/show.py",
     "    return mixup(images, labels, num_classes=len(photos), alpha=alpha,",
     "    return mixup(images, labels, num_classes=len(photos), alpha=0.0 * alpha,", ["tests/test_show.py"]),
    # ---- the fused operator's CUDA backend, run on the host ----
    ("fp16 rounds to nearest (half an ulp)", "dali_mixup/csrc/blend_kernel.h",
     "DALI_HOST_DEV inline void Store(__half *out, float v) { *out = __float2half_rn(v); }",
     "DALI_HOST_DEV inline void Store(__half *out, float v) { *out = __float2half_rz(v); }",
     ["tests/test_fused.py", "-k", "run_on_the_host"]),
    ("the blend is computed in float32", "dali_mixup/csrc/blend_kernel.h",
     "    v[e] = s.blend.a[c] * xi[e] + s.blend.b[c] * xj[e] + s.blend.offset[c];",
     "    v[e] = __half2float(__hadd(__hadd(__hmul(__float2half_rn(s.blend.a[c]), __float2half_rn(float(xi[e]))), "
     "__hmul(__float2half_rn(s.blend.b[c]), __float2half_rn(float(xj[e])))), __float2half_rn(s.blend.offset[c])));",
     ["tests/test_fused.py", "-k", "run_on_the_host"]),
    ("the wide path needs 16-byte (float) or 8-byte (half) output", "dali_mixup/csrc/blend_kernel.h",
     "!aligned(samples[i].out, kGroup * out_size)", "!aligned(samples[i].out, 8)",
     ["tests/test_fused.py", "-k", "run_on_the_host"]),
    ("the wide path needs 4-byte input", "dali_mixup/csrc/blend_kernel.h",
     "!aligned(samples[i].self, 4) || !aligned(samples[i].partner, 4)",
     "!aligned(samples[i].self, 2) || !aligned(samples[i].partner, 2)", ["tests/test_fused.py", "-k", "run_on_the_host"]),
    ("the partner is flipped by its own flag", "dali_mixup/csrc/blend_kernel.h",
     "                mirror[i], mirror[j]};", "                mirror[i], mirror[i]};",
     ["tests/test_fused.py", "-k", "run_on_the_host"]),
    ("each sample takes its own λ", "dali_mixup/csrc/blend_kernel.h",
     "MakeBlend(lam[i], mean, std), lam[i],", "MakeBlend(lam[j], mean, std), lam[i],",
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
    # ---- the build ----
    ("a failed build names its cause", "dali_mixup/build.py", "        cause = failure_cause(err)",
     "        cause = str(err).strip().splitlines()[-1]", ["tests/test_fused.py", "-k", "compile or compiler"]),
    ("the build key covers the architectures", "dali_mixup/build.py",
     '''    digest.update(json.dumps({"compiler": compiler, "nvcc": toolchain.nvcc, "flags": flags}, sort_keys=True).encode())''',
     '''    digest.update(json.dumps({"compiler": compiler, "nvcc": toolchain.nvcc}, sort_keys=True).encode())''',
     ["tests/test_fused.py", "-k", "key_changes"]),
    # ---- the loader: torchvision parity ----
    ("ImageFolder is recursive, as torchvision's", "dali_mixup/formats.py",
     "for parent, _, names in sorted(os.walk(folder, followlinks=True))",
     "for parent, _, names in [next(os.walk(folder))]", ["tests/test_parity.py", "-k", "finds_what"]),
    ("ImageFolder follows symlinks, as torchvision's", "dali_mixup/formats.py",
     "sorted(os.walk(folder, followlinks=True))", "sorted(os.walk(folder))",
     ["tests/test_parity.py", "-k", "finds_what"]),
    ("val equals torchvision's eval transform (antialiased resize)", "pipelines/images.py",
     "return fn.resize(images, **resize, interp_type=types.INTERP_TRIANGULAR), window",
     "return fn.resize(images, **resize, interp_type=types.INTERP_LINEAR, antialias=False), window",
     ["tests/test_loader.py", "-k", "torchvision"]),
    ("val's center crop is torchvision's, to the pixel", "pipelines/images.py", "dtype=types.FLOAT) + 0.25",
     "dtype=types.FLOAT) + 1.25", ["tests/test_parity.py", "-k", "sample_for_sample"]),
    ("EXIF orientation is off by default", "dali_mixup/loader.py", "    adjust_orientation=False,\n    channels_last",
     "    adjust_orientation=True,\n    channels_last", ["tests/test_parity.py", "-k", "orientation"]),
    ("adjust_orientation reaches the train decoder", "pipelines/images.py",
     "                images, output_type=types.RGB, adjust_orientation=self.adjust_orientation, **crop,",
     "                images, output_type=types.RGB, **crop,", ["tests/test_parity.py", "-k", "orientation"]),
    ("every iter() is a full fresh epoch", "dali_mixup/loader.py", "        if self._in_epoch:", "        if False:",
     ["tests/test_parity.py", "-k", "fresh or stale"]),
    ("pad_crop moves an image by at most 4 pixels", "pipelines/images.py", "    pad: int = 4", "    pad: int = 6",
     ["tests/test_parity.py", "-k", "pad_crop"]),
    ("pad_crop fills with zeros", "pipelines/images.py", 'out_of_bounds_policy="pad", fill_values=0)',
     'out_of_bounds_policy="pad", fill_values=10)', ["tests/test_parity.py", "-k", "pad_crop"]),
    # ---- the trainer ----
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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="run the mutations whose promise contains this word")
    parser.add_argument("--list", action="store_true", help="print the promises and files, run nothing")
    args = parser.parse_args(argv)
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
