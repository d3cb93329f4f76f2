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
    state = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state):
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
