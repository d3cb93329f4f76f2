"""Mixup in plain PyTorch: the ground truth for the tests and the baseline in the benchmarks."""

import torch


def one_hot_targets(labels, num_classes, label_smoothing=0.0):
    """Float32 one-hot rows ``[B, num_classes]``, smoothed as ``(1 - eps) * one_hot + eps / C``.

    Args:
        labels: integer class ids, any shape with ``B`` elements.
        num_classes: number of classes ``C``.
        label_smoothing: ``eps`` in ``[0, 1)``.
    """
    labels = torch.as_tensor(labels).reshape(-1).long()
    off = label_smoothing / num_classes
    on = 1.0 - label_smoothing + off
    targets = torch.full((labels.numel(), num_classes), off, dtype=torch.float32, device=labels.device)
    targets.scatter_(1, labels[:, None], on)
    return targets


def mixup_reference(images, labels, lam, perm, num_classes, label_smoothing=0.0, box=None, layout="CHW"):
    """Mix a batch with its permutation, as the DALI operator does: mixup, CutMix, or both.

    A sample with an empty box (or no ``box``) becomes ``lam * x + (1 - lam) * x[perm]``; a sample
    with a non-empty box takes ``x[perm]``'s pixels inside it and keeps its own outside. Every
    target is the same blend, ``lam * y + (1 - lam) * y[perm]``, of the (smoothed) one-hot labels.
    In float32 and in the same order of operations as the operator, so that the two agree to
    rounding.

    Args:
        images: tensor ``[B, ...]`` of any dtype.
        labels: integer class ids with ``B`` elements.
        lam: ``λ``, the weight of each sample's own label: a scalar or a tensor with ``B`` elements.
        perm: partner indices, ``B`` integers: sample ``i`` is mixed with ``perm[i]``.
        num_classes: number of classes.
        label_smoothing: smoothing ``eps`` applied to the one-hot labels before the blend.
        box: None, or int ``[B, 4]``: each sample's CutMix box ``[y0, x0, y1, x1]``, half-open, in
            pixels; empty (``y0 == y1`` or ``x0 == x1``) for a blended sample.
        layout: ``"CHW"`` or ``"HWC"``: where a sample's height and width are, for the boxes.

    Returns:
        ``(mixed_images, targets)``: float32 ``[B, ...]`` and float32 ``[B, num_classes]``.
    """
    images = torch.as_tensor(images)
    batch = images.shape[0]
    perm = torch.as_tensor(perm, device=images.device).reshape(-1).long()
    if perm.numel() != batch:
        raise ValueError(f"perm must have {batch} elements (the batch size), got {perm.numel()}")
    lam = torch.as_tensor(lam, dtype=torch.float32, device=images.device).reshape(-1)
    lam = lam.expand(batch) if lam.numel() == 1 else lam
    if lam.numel() != batch:
        raise ValueError(f"lam must be a scalar or have {batch} elements, got {lam.numel()}")

    x = images.float()
    lam_x = lam.view(batch, *([1] * (x.dim() - 1)))
    mixed = lam_x * x + (1 - lam_x) * x[perm]
    if box is not None:
        mixed = _paste_boxes(mixed, x, perm, torch.as_tensor(box).reshape(batch, 4).tolist(), layout)

    one_hot = one_hot_targets(labels, num_classes, label_smoothing).to(images.device)
    if one_hot.shape[0] != batch:
        raise ValueError(f"labels must have {batch} elements (the batch size), got {one_hot.shape[0]}")
    lam_y = lam[:, None]
    targets = lam_y * one_hot + (1 - lam_y) * one_hot[perm]
    return mixed, targets


def _paste_boxes(mixed, x, perm, boxes, layout):
    """``mixed`` with every sample that has a non-empty box made of its own pixels, and its partner's in the box."""
    if layout not in ("CHW", "HWC"):
        raise ValueError(f"layout must be 'CHW' or 'HWC', got {layout!r}")
    mixed = mixed.clone()
    for i, (y0, x0, y1, x1) in enumerate(boxes):
        if y0 < y1 and x0 < x1:
            region = (..., slice(y0, y1), slice(x0, x1)) if layout == "CHW" else (slice(y0, y1), slice(x0, x1))
            mixed[i] = x[i]
            mixed[i][region] = x[perm[i]][region]
    return mixed
