"""Data-parallel training across processes joined by ``jax.distributed``, with ZeRO-1 optimizer state.

Every process runs this same program (SPMD). The parameters are replicated on
every device of every process, each device gets its slice of the batch, and the
optimizer state is split across all devices (``gradtx.distributed``), so each
keeps ``1/n`` of it. The result equals that of one process with as many
devices, to float32 precision.

Two processes with four CPU devices each, on this machine:

    python examples/multihost.py --launch 2 --local-devices 4

which starts, on 127.0.0.1 and a free port, what you would start on each host:

    python examples/multihost.py --coordinator HOST:PORT --num-processes 2 --process-id 0 --local-devices 4
    python examples/multihost.py --coordinator HOST:PORT --num-processes 2 --process-id 1 --local-devices 4

Without ``--coordinator`` it trains in one process on all its devices:

    python examples/multihost.py --local-devices 8

``--local-devices`` is for CPUs (it sets ``--xla_force_host_platform_device_count``);
on GPUs and TPUs each process sees its own accelerators.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--coordinator", help="HOST:PORT of process 0; omit to run in one process")
    parser.add_argument("--num-processes", type=int, default=1)
    parser.add_argument("--process-id", type=int, default=0)
    parser.add_argument("--local-devices", type=int, help="CPU devices per process")
    parser.add_argument("--launch", type=int, metavar="N", help="start N processes on 127.0.0.1 and wait for them")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=64, help="the global batch, split across all devices")
    parser.add_argument(
        "--replicated-state", action="store_true", help="keep the whole optimizer state on every device"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="process 0 writes the final parameters and losses here (.npz)")
    parser.add_argument("--timeout", type=float, default=300, help="seconds --launch waits for its processes")
    return parser.parse_args(argv)


# ------------------------------------------------------------------- launching


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(args) -> int:
    """Start ``args.launch`` copies of this program, one per process id; stop them all if one fails."""
    forwarded = ["--steps", str(args.steps), "--batch-size", str(args.batch_size), "--seed", str(args.seed)]
    forwarded += ["--local-devices", str(args.local_devices)] if args.local_devices else []
    forwarded += ["--replicated-state"] if args.replicated_state else []
    forwarded += ["--out", args.out] if args.out else []
    command = [
        sys.executable,
        os.path.abspath(__file__),
        *forwarded,
        "--coordinator",
        f"127.0.0.1:{free_port()}",
        "--num-processes",
        str(args.launch),
    ]
    processes = [subprocess.Popen(command + ["--process-id", str(p)]) for p in range(args.launch)]
    deadline = time.monotonic() + args.timeout
    try:
        while any(p.poll() is None for p in processes):
            if any(p.poll() not in (None, 0) for p in processes) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
            p.wait()
    codes = [p.returncode for p in processes]
    if any(codes):
        print(f"launch: exit codes {codes}", file=sys.stderr)
        return 1
    return 0


# -------------------------------------------------------------------- training


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.launch:
        return launch(args)
    if args.local_devices:  # before JAX starts: the number of CPU devices of this process
        flags = os.environ.get("XLA_FLAGS", "").split()
        flags = [f for f in flags if not f.startswith("--xla_force_host_platform_device_count")]
        os.environ["XLA_FLAGS"] = " ".join(flags + [f"--xla_force_host_platform_device_count={args.local_devices}"])

    import jax
    import jax.numpy as jnp
    import numpy as np

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import gradtx
    from gradtx import distributed

    if args.coordinator:
        # CPU collectives between processes go over gloo (TCP); GPUs and TPUs use their own.
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(args.coordinator, num_processes=args.num_processes, process_id=args.process_id)

    # One mesh axis over every device of every process: data parallelism.
    mesh = jax.make_mesh((jax.device_count(),), ("data",))
    if args.batch_size % jax.device_count():
        raise SystemExit(f"--batch-size {args.batch_size} must be a multiple of the {jax.device_count()} devices")

    # Every process makes the same numbers; each puts on its own devices the parts they hold.
    rng = np.random.default_rng(args.seed)
    sizes = [16, 64, 64, 4]
    host_params = {
        f"layer{i}": {"w": (rng.standard_normal((a, b)) / np.sqrt(a)).astype(np.float32), "b": np.zeros(b, np.float32)}
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:]))
    }
    teacher = rng.standard_normal((sizes[0], sizes[-1])).astype(np.float32)

    def global_array(host, sharding):
        return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

    params = jax.tree.map(lambda x: global_array(x, distributed.replicated(mesh)), host_params)

    def loss_fn(params, batch):
        x, y = batch
        for i in range(len(sizes) - 1):
            layer = params[f"layer{i}"]
            x = x @ layer["w"] + layer["b"]
            if i < len(sizes) - 2:
                x = jnp.tanh(x)
        return jnp.mean(jnp.square(x - y))

    tx = gradtx.chain(gradtx.clip_by_global_norm(1.0), gradtx.adamw(1e-2, weight_decay=1e-4))

    def train_step(params, state, batch):
        loss, grads = jax.value_and_grad(loss_fn)(params, batch)
        updates, state = tx.update(grads, state, params)
        return gradtx.apply_updates(params, updates), state, loss

    if args.replicated_state:
        state = jax.jit(tx.init, out_shardings=distributed.replicated(mesh))(params)
    else:
        state = distributed.zero1_init(tx, params, mesh)
    step = distributed.zero1_jit(train_step, jax.tree.map(lambda x: x.sharding, state), mesh)

    losses = []
    for _ in range(args.steps):
        x = rng.standard_normal((args.batch_size, sizes[0])).astype(np.float32)
        y = np.sin(x @ teacher).astype(np.float32)
        batch = tuple(global_array(a, distributed.batch_sharding(mesh)) for a in (x, y))
        params, state, loss = step(params, state, batch)
        losses.append(float(np.asarray(loss.addressable_data(0))))  # replicated: every device has it

    state_bytes = distributed.bytes_per_device(state)
    print(
        f"process {jax.process_index()} of {jax.process_count()}: {jax.local_device_count()} of "
        f"{jax.device_count()} devices, optimizer state {state_bytes} bytes on device "
        f"{jax.local_devices()[0].id}, loss {losses[0]:.4f} -> {losses[-1]:.4f}",
        flush=True,
    )
    if args.out and jax.process_index() == 0:
        flat = {
            gradtx.tree.path_str(path): np.asarray(leaf.addressable_data(0))
            for path, leaf in gradtx.tree.leaves_with_path(params)
        }
        np.savez(args.out, losses=np.asarray(losses), state_bytes=state_bytes, **flat)
    if args.coordinator:
        jax.distributed.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
