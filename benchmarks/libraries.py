"""One optimizer step per library, all with the same configurations and the same interface.

A step object is built from a tree of float32 NumPy parameters and gradients (which it copies,
so the caller's arrays are never touched), then called once per step; it waits until the step is
done. It has ``compile_s`` and ``xla_bytes`` (None where nothing is compiled), ``state_bytes()``
(the bytes of the optimizer state's per-parameter arrays: 0-d leaves such as step counts and
hyperparameters are left out) and ``leaves()`` (the current parameters, as NumPy arrays, in tree
order).
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import inspect
import math

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import timing

OPTIMIZERS = (
    "adam",
    "chain",
    "sgd",
    "lion",
    "adafactor",
    "muon",
    "schedule_free_adamw",
    "prodigy",
    "ademamix",
    "adamw",
    *(f"{name}{kind}" for name in ("shampoo", "soap", "kron") for kind in ("", "_refresh")),
)
LIBRARIES = ("gradtx", "optax", "torch-foreach", "torch-fused")

# The configurations: expressions evaluated with gradtx's names or with Optax's (the same names and
# arguments; a pair where gradtx needs a keyword to compute Optax's numbers: its defaults follow the
# papers, see docs/migration.md), and their torch.optim counterparts (class, arguments besides lr=1e-3).
CONFIGURATIONS: dict[str, str | dict[str, str]] = {
    "adam": "adam(1e-3)",
    "chain": "chain(clip_by_global_norm(1.0), adamw(warmup_cosine_decay_schedule(0.0, 1e-3, 100, 10_000), "
    "weight_decay=1e-2))",
    "sgd": "sgd(1e-3, momentum=0.9)",
    "lion": "lion(1e-4, b1=0.9, b2=0.99, weight_decay=1e-3)",
    "adafactor": "adafactor(1e-3)",
    "muon": "contrib.muon(1e-3)",  # Newton-Schulz on the 2-D leaves, Adam on the others
    "schedule_free_adamw": {
        "gradtx": "contrib.schedule_free_adamw(1e-3, weight_by_max_lr=True, bias_correction_in_denominator=True)",
        "optax": "contrib.schedule_free_adamw(1e-3)",
    },
    "prodigy": {
        "gradtx": "contrib.prodigy(1.0, use_bias_correction=True)",
        "optax": "contrib.prodigy(1.0)",
    },
    "ademamix": "contrib.ademamix(1e-3)",
    "adamw": "adamw(1e-3, weight_decay=1e-4)",  # the baseline of the matrix-preconditioned rows
    # Matrix-preconditioned optimizers (gradtx only: neither Optax nor torch.optim has them). Each comes
    # twice: plain, whose timed steps never refresh the preconditioner (its interval longer than the run),
    # and "_refresh", which refreshes it at every step; a step at the method's own interval T costs
    # plain + (refresh - plain) / T on average (docs/benchmarks.md).
    "shampoo": {"gradtx": "shampoo(1e-3, start_preconditioning_step=0, preconditioning_compute_steps=10**6)"},
    "shampoo_refresh": {"gradtx": "shampoo(1e-3, start_preconditioning_step=0, preconditioning_compute_steps=1)"},
    "soap": {"gradtx": "soap(3e-3, precondition_frequency=10**6)"},
    "soap_refresh": {"gradtx": "soap(3e-3, precondition_frequency=1)"},
    "kron": {"gradtx": "kron(1e-3, preconditioner_update_probability=0.0)"},
    "kron_refresh": {"gradtx": "kron(1e-3, preconditioner_update_probability=1.0)"},
}
# torch.optim.Adafactor's lr caps the paper's relative step, min(lr, 1/sqrt(t)): it is lr until t = 1e6;
# its parameter scaling and update clipping (d=1.0) are gradtx's and Optax's defaults, but it factors
# every matrix (gradtx and Optax only those whose two smallest dimensions are >= 128).
TORCH = {
    "adam": ("Adam", {}),
    "chain": ("AdamW", {"weight_decay": 1e-2}),  # after clip_grad_norm_(1.0); LambdaLR(warmup_cosine)
    "sgd": ("SGD", {"momentum": 0.9}),
    "adafactor": ("Adafactor", {}),
    # Muon takes only matrices: the other leaves get Adam, as in gradtx and Optax; torch's Muon has no
    # foreach or fused kernel, so only the Adam part of it is foreach or fused. Optax's weight decay (0).
    "muon": ("Muon", {"weight_decay": 0.0}),
    "adamw": ("AdamW", {"weight_decay": 1e-4}),
}


def torch_configuration(optimizer: str) -> str:
    if optimizer not in TORCH:
        return "n/a"
    name, kwargs = TORCH[optimizer]
    text = f"{name}(lr=1e-3" + "".join(f", {k}={v}" for k, v in kwargs.items()) + ")"
    if optimizer == "muon":
        return f"{text} on the 2-D leaves + Adam(lr=1e-3) on the others"
    return f"clip_grad_norm_(1.0) + {text} + LambdaLR(warmup-cosine)" if optimizer == "chain" else text


class Unsupported(Exception):
    """The library has no such configuration; ``status`` is 'n/a' or 'unsupported'."""

    def __init__(self, status: str, note: str):
        super().__init__(note)
        self.status = status


def missing(library: str) -> str | None:
    """Why the library cannot run here (not installed), or None."""
    name = library.split("-")[0]
    return None if name == "floor" or importlib.util.find_spec(name) else f"{name} is not installed"


def jax_optimizer(lib, name: str):
    """The named configuration built with ``lib``'s names (the gradtx or the optax module)."""
    expression = CONFIGURATIONS[name]
    if isinstance(expression, dict):
        if lib.__name__ not in expression:
            raise Unsupported("n/a", f"{lib.__name__} has no {name.removesuffix('_refresh')}")
        expression = expression[lib.__name__]
    return eval(expression, {"__builtins__": {}}, vars(lib))


def jax_step(library: str, optimizer: str, params, grads) -> timing.Jitted:
    """``tx.update`` then the library's own ``apply_updates``, jitted, params and state donated."""
    lib = importlib.import_module(library)
    tx = jax_optimizer(lib, optimizer)
    params = jax.tree.map(jnp.array, params)  # copies: donation must not reach the caller's arrays

    def step(params, state, grads):
        updates, state = tx.update(grads, state, params)
        return lib.apply_updates(params, updates), state

    # A state holding the parameters themselves (Optax's Prodigy keeps them as x0) cannot be donated
    # with them: copies, as a user of such a library has to make (gradtx's own states never alias,
    # tests/suites/test_properties.py checks it).
    state = jax.tree.map(jnp.copy, tx.init(params))
    return timing.Jitted(step, params, state, jax.tree.map(jnp.array, grads))


def warmup_cosine(step: int) -> float:
    """``warmup_cosine_decay_schedule(0, 1, 100, 10000)`` as a factor of the base rate, for LambdaLR."""
    if step < 100:
        return step / 100
    return 0.5 * (1 + math.cos(math.pi * min(step - 100, 9900) / 9900))


class TorchStep:
    """A torch.optim step (gradients set once, as ``.grad``) with ``foreach=True`` or ``fused=True``."""

    compile_s = xla_bytes = None

    def __init__(self, library: str, optimizer: str, params, grads):
        torch = importlib.import_module("torch")
        implementation = library.split("-")[1]  # "foreach" or "fused"
        if optimizer not in TORCH:
            raise Unsupported("n/a", f"torch.optim has no {optimizer.removesuffix('_refresh').capitalize()}")
        name, kwargs = TORCH[optimizer]
        optimizer_class = getattr(torch.optim, name, None)
        # Muon's Adam part is the one with a foreach or fused kernel
        kernel_class = torch.optim.Adam if optimizer == "muon" else optimizer_class
        if optimizer_class is None or implementation not in inspect.signature(kernel_class).parameters:
            raise Unsupported("unsupported", f"torch {torch.__version__} has no {implementation} torch.optim.{name}")
        # torch's weights are (out, in) where the trees' kernels are (in, out), as in Flax: Muon's
        # learning-rate adjustment reads the shape, so its matrices are given to torch transposed
        self.transpose = optimizer == "muon"
        as_torch = lambda x: torch.tensor(x.T.copy() if self.transpose and x.ndim == 2 else x)  # noqa: E731
        self.params = [torch.nn.Parameter(as_torch(p)) for p in jax.tree.leaves(params)]
        for p, g in zip(self.params, jax.tree.leaves(grads)):
            p.grad = as_torch(g)
        self.clip = self.schedule = None
        try:
            if optimizer == "muon":
                matrices = [p for p in self.params if p.ndim == 2]
                others = [p for p in self.params if p.ndim != 2]
                self.optimizers = [optimizer_class(matrices, lr=1e-3, **kwargs)] if matrices else []
                if others:
                    self.optimizers.append(torch.optim.Adam(others, lr=1e-3, **{implementation: True}))
            else:
                self.optimizers = [optimizer_class(self.params, lr=1e-3, **kwargs, **{implementation: True})]
        except RuntimeError as error:  # e.g. no fused kernel for this device
            raise Unsupported("unsupported", str(error)) from error
        if optimizer == "chain":
            self.clip = functools.partial(torch.nn.utils.clip_grad_norm_, self.params, 1.0, foreach=True)
            self.schedule = torch.optim.lr_scheduler.LambdaLR(self.optimizers[0], warmup_cosine)

    def __call__(self):
        if self.clip:
            self.clip()
        for optimizer in self.optimizers:
            optimizer.step()
        if self.schedule:
            self.schedule.step()

    def state_bytes(self) -> int:
        states = [state for optimizer in self.optimizers for state in optimizer.state.values()]
        tensors = [x for state in states for x in state.values() if hasattr(x, "nbytes")]
        return timing.per_parameter_bytes(tensors)

    def leaves(self) -> list[np.ndarray]:
        leaves = [p.detach().numpy() for p in self.params]
        return [x.T.copy() if self.transpose and x.ndim == 2 else x.copy() for x in leaves]


def make(library: str, optimizer: str, params, grads):
    """The step object of ``library`` (or "floor") for the named optimizer; raises :class:`Unsupported`."""
    if library == "floor":
        if optimizer not in timing.FLOORS:
            raise Unsupported(
                "n/a", f"no flat-array floor: {optimizer.removesuffix('_refresh')} works on whole matrices"
            )
        return timing.floor_step(optimizer, params, grads)
    if library in ("gradtx", "optax"):
        return jax_step(library, optimizer, params, grads)
    return TorchStep(library, optimizer, params, grads)
