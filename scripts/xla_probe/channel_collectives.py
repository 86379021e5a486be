"""Experimental workaround for multi-device PJRT *CPU* (CPU_NUM_DEVICES>1, one thread per device).

Cause of the hang: XLA:CPU's in-process collectives meet at a rendezvous keyed by
(run_id, devices, op_id). For a collective *without* a channel_id -- what torch_xla emits
for xm.all_reduce, and for xm.all_gather(pin_layout=True), which is an all_reduce over an
ordinal-dependent pad -- op_id is HloModule::unique_id(), a process-wide counter. Every
device thread that compiles its own executable (concurrent cache misses, or graphs that
differ per ordinal) gets a different op_id, so the threads wait at different rendezvous
points until XLA aborts ("Expected 2 threads to join the rendezvous, but only 1 of them
arrived on time", F rendezvous.cc after 10 s).

Workaround: give every collective an explicit channel_id (then op_id = channel_id, equal in
all replicas' executables, whoever compiled them). torch_xla's all_reduce has no channel_id
argument, but all_gather does, so all_reduce is rebuilt as all_gather + reduction. Channel
ids come from a per-thread counter reset at every torch_xla.sync(), so identical steps
produce identical graphs (no recompilation) and all replicas number their collectives alike.
Memory cost: world_size x the reduced tensors (fine for CPU tests, not for real use).

    import channel_collectives; channel_collectives.install()   # before the device threads start
"""
import os
import threading
import time

_BASE = 1 << 20  # far above HloModule unique ids (small process-wide counters)
_state = threading.local()
_INSTALLED = False
_DEBUG = os.environ.get("TX_PROBE_CHANNEL_DEBUG") == "1"


def _next_channel():
    n = getattr(_state, "n", 0)
    _state.n = n + 1
    return _BASE + n


def install():
    global _INSTALLED
    if _INSTALLED:
        return
    import torch
    import torch_xla
    import torch_xla.core.xla_model as xm
    import torch_xla.runtime as xr

    orig_marker = torch_xla._XLAC._xla_step_marker
    orig_all_gather = xm.all_gather

    # XLA:CPU aborts a collective whose peers are >10 s late (hard-coded, no flag). A device
    # thread that compiles a big step graph while its peer already runs it is that late, so
    # line the threads up before every sync ("soft" barrier: an asymmetric sync, e.g. one done
    # only on the master ordinal, just waits out the timeout once).
    cond = threading.Condition()
    counts = {}

    def soft_barrier(timeout=float(os.environ.get("TX_PROBE_BARRIER_TIMEOUT", "60"))):
        me = threading.get_ident()
        world = xr.world_size()
        with cond:
            counts[me] = counts.get(me, 0) + 1
            mine = counts[me]
            cond.notify_all()
            cond.wait_for(lambda: len(counts) >= world and min(counts.values()) >= mine, timeout=timeout)

    # Then let ordinal 0 sync first and the others follow once its graph is in the
    # compilation cache (or it hit the cache / finished), so they reuse its executable
    # instead of compiling their own, possibly >10 s late on a loaded machine.
    leader = {"gen": 0, "active": False, "snap": None}

    def _cache_state():
        return (torch_xla._XLAC._xla_counter_value("CachedCompile") or 0,
                torch_xla._XLAC._xla_get_num_cached_compilation_graph())

    def step_marker(*args, **kwargs):
        _state.n = 0
        if xr.world_size() == 1:
            return orig_marker(*args, **kwargs)
        soft_barrier()
        _state.gen = getattr(_state, "gen", 0) + 1
        if xr.global_ordinal() == 0:
            with cond:
                leader.update(gen=_state.gen, active=True, snap=_cache_state())
                cond.notify_all()
            try:
                return orig_marker(*args, **kwargs)
            finally:
                with cond:
                    leader["active"] = False
                    cond.notify_all()
        deadline = time.monotonic() + 120
        with cond:
            cond.wait_for(lambda: leader["gen"] >= _state.gen, timeout=30)
        while time.monotonic() < deadline:
            with cond:
                if leader["gen"] > _state.gen or not leader["active"]:
                    break
                snap = leader["snap"]
            now = _cache_state()
            if now[0] > snap[0] or now[1] > snap[1]:
                break
            time.sleep(0.02)
        return orig_marker(*args, **kwargs)

    def all_gather(value, dim=0, groups=None, output=None, pin_layout=True, channel_id=None,
                   use_global_device_ids=None):
        if output is None and isinstance(value, torch.Tensor) and not groups:
            return orig_all_gather(value, dim=dim, pin_layout=False,
                                   channel_id=_next_channel() if channel_id is None else channel_id,
                                   use_global_device_ids=use_global_device_ids)
        return orig_all_gather(value, dim=dim, groups=groups, output=output, pin_layout=pin_layout,
                               channel_id=channel_id, use_global_device_ids=use_global_device_ids)

    reducers = {
        xm.REDUCE_SUM: lambda t: t.sum(0),
        xm.REDUCE_MUL: lambda t: t.prod(0),
        xm.REDUCE_MIN: lambda t: t.amin(0),
        xm.REDUCE_MAX: lambda t: t.amax(0),
        xm.REDUCE_AND: lambda t: t.bool().all(0).to(t.dtype),
        xm.REDUCE_OR: lambda t: t.bool().any(0).to(t.dtype),
    }
    orig_all_reduce = xm.all_reduce

    def _reduce_one(reduce_type, t, scale):
        g = all_gather(t.unsqueeze(0), dim=0)  # [world, *t.shape]
        r = reducers[reduce_type](g)
        return r * scale if scale != 1.0 else r

    def all_reduce(reduce_type, inputs, scale=1.0, groups=None, pin_layout=True):
        if groups or xr.world_size() == 1:
            return orig_all_reduce(reduce_type, inputs, scale=scale, groups=groups, pin_layout=pin_layout)
        if _DEBUG:
            print(f"[channel_collectives] {threading.current_thread().name} all_reduce "
                  f"n={1 if isinstance(inputs, torch.Tensor) else len(inputs)} next={getattr(_state, 'n', 0)}",
                  flush=True)
        if isinstance(inputs, torch.Tensor):
            return _reduce_one(reduce_type, inputs, scale)
        with torch.no_grad():
            for t in inputs:
                t.copy_(_reduce_one(reduce_type, t, scale))
        return inputs

    torch_xla._XLAC._xla_step_marker = step_marker
    xm.all_gather = all_gather
    xm.all_reduce = all_reduce
    _INSTALLED = True
