"""Checkpoints written atomically and read back with ``weights_only=True``."""

import os
import random

import torch


def save(path, state):
    """Write ``state`` to ``path`` through a temporary file and a rename.

    ``os.replace`` is atomic on POSIX, so a process killed mid-save leaves the previous
    checkpoint whole; at worst a stray ``.tmp`` file remains.
    """
    tmp = f"{path}.tmp"
    torch.save(state, tmp)
    os.replace(tmp, path)


def load(path):
    """Load a checkpoint; tensors, numbers, strings and containers only, no code."""
    return torch.load(path, map_location="cpu", weights_only=True)


def rng_state():
    """This process's RNG states: Python's, torch's CPU generator and, with CUDA, its current GPU's.

    One GPU's state, not every visible GPU's: a rank uses one GPU, and a resume that sees fewer
    GPUs per process (per-rank ``CUDA_VISIBLE_DEVICES``) can then still restore it.
    """
    state = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state):
    """Restore what :func:`rng_state` saved (a GPU state goes to the current GPU)."""
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def training_state(*, model, optimizer, scheduler, scaler, epoch, best_top1, rng):
    """What a checkpoint holds, for :func:`save`; :func:`restore` puts it back.

    Args:
        model: the model, unwrapped from DDP.
        optimizer, scheduler, scaler: the optimizer, learning-rate scheduler and AMP gradient scaler.
        epoch: the next epoch to run.
        best_top1: the best val top-1 so far.
        rng: every rank's :func:`rng_state`, in rank order.
    """
    return {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(), "epoch": epoch, "best_top1": best_top1, "rng": rng}


def restore(state, *, model, optimizer, scheduler, scaler, rank):
    """Put a checkpoint's training state back: weights, optimizer (its momentum buffers), schedule,
    loss scaler, and this rank's RNG states (rank 0's when the run had fewer ranks).

    Args:
        state: what the trainer saved (see :func:`load`).
        model: the model, unwrapped from DDP.
        optimizer: the optimizer over ``model``'s parameters.
        scheduler: the learning-rate scheduler.
        scaler: the AMP gradient scaler.
        rank: this process's rank.
    """
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    scaler.load_state_dict(state["scaler"])
    set_rng_state(state["rng"][rank] if rank < len(state["rng"]) else state["rng"][0])
