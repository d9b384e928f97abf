"""params.yaml against this machine: what the train stage would refuse, refused by the check stage.

The schema (:mod:`clockpizza.io.params`) knows values only. Some values are refused only by what
the machine has: a CUDA device, Ray, a Ray cluster that answers, the memory one model needs;
others by the grid's run ids, which the science computes (``render.*_run_id``).
DVC removes a stage's outputs just before it runs the stage, so a refusal found by the train
stage itself would come after DVC had deleted outputs; the check stage runs these first.
Each refusal is one :class:`ParamsError` line naming the key and what is allowed here.
"""

from __future__ import annotations

import importlib.util
import os
import socket
from urllib.parse import urlsplit

import torch

from clockpizza.io.params import Params, ParamsError, TrainConfig
from clockpizza.science.architectures import model_config
from clockpizza.science.grid import grid_specs
from clockpizza.science.spec import TRANSFORMER, shape_groups
from clockpizza.science.train import bytes_per_model, free_memory

# A cluster that does not answer the TCP handshake within this is down (or firewalled): Ray itself
# would wait 30 s and then fail with a traceback.
PROBE_SECONDS = 3.0
RAY_CLIENT_PORT = 10001  # ray:// without a port
GIB = 2**30


def check_machine(params: Params) -> None:
    """Refuse (ParamsError) what this machine cannot do with ``params``; nothing is started."""
    check_example_runs(params)
    t = params.train
    remote = t.backend == "ray" and _ray_address(t) is not None
    if t.backend == "ray":
        _check_ray(t)
    if t.device == "cuda" and not remote and not torch.cuda.is_available():
        raise ParamsError(f"train.device = 'cuda': torch {torch.__version__} sees no CUDA device "
                          "on this machine; allowed here: auto or cpu")
    if not remote:  # a remote cluster's memory is not known here
        check_memory(params)


def _ray_address(t: TrainConfig) -> str | None:
    return t.ray_address or os.environ.get("RAY_ADDRESS") or None


def _check_ray(t: TrainConfig) -> None:
    if importlib.util.find_spec("ray") is None:
        raise ParamsError("train.backend = 'ray': Ray is not installed here; allowed: local, "
                          "or install Ray (pip install -e '.[ray]')")
    address = _ray_address(t)
    if address is None or address in ("auto", "local"):
        return  # a cluster started here, or Ray's own search for a running one
    key = "train.ray_address" if t.ray_address else "RAY_ADDRESS (environment)"
    host, port = _host_port(address)
    if host is None:
        raise ParamsError(f"{key} = {address!r}: not an address; allowed: null, auto, "
                          "host:port (a cluster's GCS) or ray://host:port (Ray Client)")
    try:
        with socket.create_connection((host, port), timeout=PROBE_SECONDS):
            pass
    except OSError as e:
        reason = "no answer" if isinstance(e, TimeoutError) else (e.strerror or str(e))
        raise ParamsError(f"{key} = {address!r}: nothing answers at {host}:{port} ({reason}, "
                          f"{PROBE_SECONDS:g} s probe); start the cluster (ray start --head) or "
                          "set train.ray_address: null for a local one") from None


def _host_port(address: str) -> tuple[str | None, int]:
    url = urlsplit(address if "://" in address else f"gcs://{address}")
    try:
        port = url.port
    except ValueError:
        return None, 0
    if port is None:
        port = RAY_CLIENT_PORT if url.scheme == "ray" else 6379
    return url.hostname, port


def check_memory(params: Params, free: int | None = None) -> None:
    """Refuse a grid one of whose models alone cannot train in the memory the trainer plans
    with (half the free memory of the device: :func:`clockpizza.science.train.plan_chunks`),
    with the trainer's own estimate in the message. ``free``: bytes free (default: now)."""
    t, d = params.train, params.data
    device = torch.device("cuda" if t.device != "cpu" and torch.cuda.is_available() else "cpu")
    budget = (free_memory(device) if free is None else free) // 2
    n_train = d.p * d.p if d.split_per_run else round(d.train_frac * d.p * d.p)
    for group in shape_groups(grid_specs(params)):
        spec = group[0]
        need = bytes_per_model(model_config(spec), n_train)
        if need > budget:
            what = (f"a width-{spec.d_model} transformer with {spec.n_layers} layer(s)"
                    if spec.n_layers else f"model {spec.family} (mlp_family.width = "
                                          f"{spec.d_model})")
            raise ParamsError(
                f"data.p = {d.p}: {what} needs about {need / GIB:.1f} GiB while training on "
                f"{n_train} pairs (the trainer's estimate), more than the {budget / GIB:.1f} "
                f"GiB it may plan with on {device.type} (half of what is free); allowed here: "
                "a smaller data.p or width")


def check_example_runs(params: Params) -> None:
    """``render.clock_run_id`` / ``pizza_run_id``: null or a transformer run of the grid (the
    mechanism stage draws it; it would refuse one it cannot find, after DVC removed outputs)."""
    r = params.render
    given = {"clock": r.clock_run_id, "pizza": r.pizza_run_id}
    if all(v is None for v in given.values()):
        return
    ids = [s.run_id for s in grid_specs(params) if s.family == TRANSFORMER]
    for role, run_id in given.items():
        if run_id is not None and run_id not in ids:
            shown = ", ".join(ids[:4]) + (", …" if len(ids) > 4 else "")
            raise ParamsError(f"render.{role}_run_id = {run_id!r}: not a transformer run of the "
                              f"grid in params.yaml; allowed: null or one of its {len(ids)} run "
                              f"ids ({shown}; the run_id column of metrics/runs.parquet)")
