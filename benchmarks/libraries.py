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

OPTIMIZERS = ("adam", "chain", "sgd", "lion", "adafactor")
LIBRARIES = ("gradtx", "optax", "torch-foreach", "torch-fused")

# The configurations: expressions evaluated with gradtx's names or with Optax's (the same names and
# arguments), and their torch.optim counterparts (class, arguments besides lr=1e-3).
CONFIGURATIONS = {
    "adam": "adam(1e-3)",
    "chain": "chain(clip_by_global_norm(1.0), adamw(warmup_cosine_decay_schedule(0.0, 1e-3, 100, 10_000), "
    "weight_decay=1e-2))",
    "sgd": "sgd(1e-3, momentum=0.9)",
    "lion": "lion(1e-4, b1=0.9, b2=0.99, weight_decay=1e-3)",
    "adafactor": "adafactor(1e-3)",
}
# torch.optim.Adafactor's lr caps the paper's relative step, min(lr, 1/sqrt(t)): it is lr until t = 1e6;
# its parameter scaling and update clipping (d=1.0) are gradtx's and Optax's defaults, but it factors
# every matrix (gradtx and Optax only those whose two smallest dimensions are >= 128).
TORCH = {
    "adam": ("Adam", {}),
    "chain": ("AdamW", {"weight_decay": 1e-2}),  # after clip_grad_norm_(1.0); LambdaLR(warmup_cosine)
    "sgd": ("SGD", {"momentum": 0.9}),
    "adafactor": ("Adafactor", {}),
}


def torch_configuration(optimizer: str) -> str:
    if optimizer not in TORCH:
        return "n/a"
    name, kwargs = TORCH[optimizer]
    text = f"{name}(lr=1e-3" + "".join(f", {k}={v}" for k, v in kwargs.items()) + ")"
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
    return eval(CONFIGURATIONS[name], {"__builtins__": {}}, vars(lib))


def jax_step(library: str, optimizer: str, params, grads) -> timing.Jitted:
    """``tx.update`` then the library's own ``apply_updates``, jitted, params and state donated."""
    lib = importlib.import_module(library)
    tx = jax_optimizer(lib, optimizer)
    params = jax.tree.map(jnp.array, params)  # copies: donation must not reach the caller's arrays

    def step(params, state, grads):
        updates, state = tx.update(grads, state, params)
        return lib.apply_updates(params, updates), state

    return timing.Jitted(step, params, tx.init(params), jax.tree.map(jnp.array, grads))


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
            raise Unsupported("n/a", f"torch.optim has no {optimizer.capitalize()}")
        name, kwargs = TORCH[optimizer]
        optimizer_class = getattr(torch.optim, name, None)
        if optimizer_class is None or implementation not in inspect.signature(optimizer_class).parameters:
            raise Unsupported("unsupported", f"torch {torch.__version__} has no {implementation} torch.optim.{name}")
        self.params = [torch.nn.Parameter(torch.tensor(p)) for p in jax.tree.leaves(params)]
        for p, g in zip(self.params, jax.tree.leaves(grads)):
            p.grad = torch.tensor(g)
        self.clip = self.schedule = None
        try:
            self.optimizer = optimizer_class(self.params, lr=1e-3, **kwargs, **{implementation: True})
        except RuntimeError as error:  # e.g. no fused kernel for this device
            raise Unsupported("unsupported", str(error)) from error
        if optimizer == "chain":
            self.clip = functools.partial(torch.nn.utils.clip_grad_norm_, self.params, 1.0, foreach=True)
            self.schedule = torch.optim.lr_scheduler.LambdaLR(self.optimizer, warmup_cosine)

    def __call__(self):
        if self.clip:
            self.clip()
        self.optimizer.step()
        if self.schedule:
            self.schedule.step()

    def state_bytes(self) -> int:
        tensors = [x for state in self.optimizer.state.values() for x in state.values() if hasattr(x, "nbytes")]
        return timing.per_parameter_bytes(tensors)

    def leaves(self) -> list[np.ndarray]:
        return [p.detach().numpy().copy() for p in self.params]


def make(library: str, optimizer: str, params, grads):
    """The step object of ``library`` (or "floor") for the named optimizer; raises :class:`Unsupported`."""
    if library == "floor":
        return timing.floor_step(optimizer, params, grads)
    if library in ("gradtx", "optax"):
        return jax_step(library, optimizer, params, grads)
    return TorchStep(library, optimizer, params, grads)
