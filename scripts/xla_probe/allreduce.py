"""Minimal torch_xla collective probe: torch_xla.launch + xm.all_reduce on PJRT CPU.

    PJRT_DEVICE=CPU CPU_NUM_DEVICES=2 python allreduce.py [--single] [--steps N] [--fork] [--stagger SECONDS]
"""
import argparse
import os
import sys
import threading
import time


def _mp_fn(index, steps, stagger=0.0):
    import torch
    import torch_xla
    import torch_xla.core.xla_model as xm
    import torch_xla.runtime as xr

    dev = torch_xla.device()
    tag = (f"[pid {os.getpid()} thread {threading.current_thread().name} index {index} "
           f"ordinal {xr.global_ordinal()} local {xr.local_ordinal()} world {xr.world_size()} "
           f"addressable {xr.addressable_device_count()} device {dev}]")
    print(tag, "start", flush=True)
    if stagger and xr.global_ordinal() != 0:
        time.sleep(stagger)  # let ordinal 0 compile first so the others hit its cache
    if os.environ.get("TX_PROBE_CHANNEL_COLLECTIVES") == "1":
        import channel_collectives
        channel_collectives.install()
    for step in range(steps):
        t = (torch.ones(4) * (xr.global_ordinal() + 1)).to(dev)  # device data, same graph on every replica
        t0 = time.time()
        r = xm.all_reduce(xm.REDUCE_SUM, t)
        torch_xla.sync()
        print(tag, f"step {step} all_reduce -> {r.cpu().tolist()} in {time.time()-t0:.2f}s", flush=True)
    xm.rendezvous("done")
    import torch_xla.debug.metrics as met
    print(tag, "rendezvous ok; CompileTime", met.metric_data("CompileTime"), flush=True)
    return xr.global_ordinal()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--single", action="store_true", help="debug_single_process=True")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--fork", action="store_true")
    ap.add_argument("--stagger", type=float, default=0.0,
                    help="seconds ordinals>0 wait before the first collective")
    a = ap.parse_args()
    import torch_xla
    print("env:", {k: v for k, v in os.environ.items() if k.startswith(("PJRT", "XLA", "CPU_NUM", "TPU"))}, flush=True)
    torch_xla.launch(_mp_fn, args=(a.steps, a.stagger), debug_single_process=a.single,
                     start_method="fork" if a.fork else "spawn")
    print("launch returned", flush=True)
