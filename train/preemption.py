"""Preemption: SIGTERM or SIGUSR1 asks the run to save and stop, and every rank agrees on the step.

SLURM sends SIGTERM some seconds before it kills a job (``--signal`` chooses another signal, often
SIGUSR1, and when), spot instances do the same, and torchrun passes the signal it gets on to its
workers. A rank that gets one only raises a flag; the ranks agree at a step boundary, so that all
of them stop after the same step and the checkpoint holds one consistent state:

- each step, every rank starts an all-reduce (MAX) of two flags, "a signal came" and "a timed
  save is due" (the latter from rank 0's clock alone), without waiting for it;
- the next step, it waits for that all-reduce, which has run meanwhile, and acts on its result:
  every rank sees the same flags, one step after the first rank raised one.

So the agreement costs one asynchronous all-reduce of two numbers a step, overlapped with the
step's compute (``benchmarks.preemption`` measures it), and a signal is acted on within two steps.
"""

import signal
import time

import torch
import torch.distributed as dist

SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


class Preemption:
    """The run's stop-and-save flags, agreed across ranks one step late (see the module docstring).

    Args:
        device: where the flags' tensor lives (the GPU under NCCL, the CPU under gloo).
        save_every_minutes: ask for a save every this many minutes of rank 0's clock; 0 never.
    """

    def __init__(self, device, save_every_minutes=0.0):
        self.signal = None
        self._device, self._period = device, save_every_minutes * 60
        self._last_save = time.monotonic()
        self._pending = None  # (work, tensor) of the all-reduce started at the last step
        self._previous = {}
        for number in SIGNALS:
            self._previous[number] = signal.signal(number, self._raise_flag)

    def _raise_flag(self, number, frame):
        self.signal = self.signal or number

    def restore(self):
        """Put the handlers that were there before back."""
        for number, handler in self._previous.items():
            signal.signal(number, handler)

    def saved(self):
        """A checkpoint was written: the timed saves count from now."""
        self._last_save = time.monotonic()

    def poll(self, master):
        """``(stop, save)``: whether to stop (a rank got a signal) and whether a timed save is due, the same on
        every rank. Call once a step; it answers for the flags raised by the step before."""
        due = bool(self._period) and master and time.monotonic() - self._last_save >= self._period
        flags = torch.tensor([float(self.signal or 0), float(due)], device=self._device)
        if not dist.is_initialized():
            return bool(flags[0]), bool(flags[1])
        previous, self._pending = self._pending, (dist.all_reduce(flags, op=dist.ReduceOp.MAX, async_op=True), flags)
        if previous is None:
            return False, False
        work, agreed = previous
        work.wait()
        stop, save = agreed.tolist()
        if stop and not self.signal:
            self.signal = int(stop)  # another rank got it: act on the same signal
        return bool(stop), bool(save)

    def settle(self):
        """Wait for the all-reduce in flight (before a collective of another kind, or the end)."""
        if self._pending is not None:
            self._pending[0].wait()
            self._pending = None

    @property
    def exit_status(self):
        """128 + the signal's number (143 for SIGTERM, 138 for SIGUSR1): the status a process that signal
        killed has, which schedulers and job scripts read as "preempted"."""
        return 128 + int(self.signal)
