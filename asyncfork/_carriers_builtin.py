"""The built-in carriers: torch's per-thread modes, and numpy 1.x's error state.

Each is made from its module once the user's program has imported it (asyncfork never
imports torch or numpy). NumPy 2 keeps ``errstate`` in a context variable, which every
fork gets a copy of already: its carrier is for numpy 1.x only.
"""

# torch's per-thread switches live in torch._C; their public aliases add a Python call.
# pyright: reportPrivateUsage=false, reportUnknownMemberType=false, reportUnknownVariableType=false

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

# (device, autocast enabled, autocast dtype) per device type, then the cache switch.
_Autocast = tuple[tuple[tuple[str, bool, Any], ...], bool]
# grad mode, inference mode, autocast (None: off on every device), intra-op threads.
_TorchState = tuple[bool, bool, "_Autocast | None", int]


class TorchCarrier:
    """torch's thread-bound modes: grad mode, inference mode, autocast (on and dtype per
    device type, and its weight cache), and the intra-op thread count."""

    __slots__ = (
        "_any_autocast",
        "_clear_cache",
        "_dec_nesting",
        "_devices",
        "_get_cache",
        "_get_dtype",
        "_get_enabled",
        "_get_threads",
        "_grad",
        "_inc_nesting",
        "_inference",
        "_inference_guard",
        "_set_cache",
        "_set_dtype",
        "_set_enabled",
        "_set_grad",
        "_set_threads",
    )

    def __init__(self, torch: Any) -> None:
        c = torch._C
        self._grad = c.is_grad_enabled
        self._set_grad = c._set_grad_enabled
        self._inference = c.is_inference_mode_enabled
        self._inference_guard = c._InferenceMode
        self._get_threads = c.get_num_threads
        self._set_threads = c.set_num_threads
        self._any_autocast = c._is_any_autocast_enabled
        self._get_enabled = c.is_autocast_enabled
        self._set_enabled = c.set_autocast_enabled
        self._get_dtype = c.get_autocast_dtype
        self._set_dtype = c.set_autocast_dtype
        self._get_cache = c.is_autocast_cache_enabled
        self._set_cache = c.set_autocast_cache_enabled
        self._inc_nesting = c.autocast_increment_nesting
        self._dec_nesting = c.autocast_decrement_nesting
        self._clear_cache = c.clear_autocast_cache
        self._devices: tuple[str, ...] = tuple(c._autocast_supported_devices())

    def __repr__(self) -> str:
        return "<asyncfork torch carrier>"

    def capture(self) -> _TorchState:
        # Autocast is read device by device only while some device has it on.
        autocast = self._autocast() if self._any_autocast() else None
        return (self._grad(), self._inference(), autocast, self._get_threads())

    def _autocast(self) -> _Autocast:
        get_enabled, get_dtype = self._get_enabled, self._get_dtype
        devices = tuple((d, get_enabled(d), get_dtype(d)) for d in self._devices)
        return devices, self._get_cache()

    def _apply_autocast(self, autocast: _Autocast | None) -> None:
        if autocast is None:  # off everywhere (dtypes as they are)
            for device in self._devices:
                self._set_enabled(device, False)
            return
        devices, cache = autocast
        for device, enabled, dtype in devices:
            self._set_enabled(device, enabled)
            self._set_dtype(device, dtype)
        self._set_cache(cache)

    def enter(self, state: _TorchState) -> tuple[Any, ...]:
        grad, inference, autocast, threads = state
        # Always a guard: its exit puts back the thread's whole autograd state (grad and
        # inference mode), even one the fork's code changed and left changed (a
        # `with torch.inference_mode():` open across an await); torch has no other way to
        # leave inference mode from outside the block that entered it.
        guard = self._inference_guard(inference)
        guard.__enter__()
        was_grad = self._grad()
        if was_grad != grad:
            self._set_grad(grad)
        previous_autocast = None
        nested = autocast is not None
        if nested or self._any_autocast():
            previous_autocast = self._autocast()
            if nested:  # as torch.autocast does: its cache is dropped at the outermost exit
                self._inc_nesting()
            self._apply_autocast(autocast)
        was_threads = self._get_threads()
        if was_threads != threads:
            self._set_threads(threads)
        return (guard, was_grad, previous_autocast, nested, was_threads)

    def exit(self, token: tuple[Any, ...]) -> None:
        guard, grad, autocast, nested, threads = token
        # Whatever the fork's code did (set_grad_enabled(False), say) ends here.
        if self._get_threads() != threads:
            self._set_threads(threads)
        if autocast is not None or self._any_autocast():
            if nested and self._dec_nesting() == 0:
                self._clear_cache()
            if autocast is None:
                self._apply_autocast(None)
            else:
                devices, cache = autocast
                for device, enabled, dtype in devices:
                    self._set_enabled(device, enabled)
                    self._set_dtype(device, dtype)
                self._set_cache(cache)
        if self._grad() != grad:
            self._set_grad(grad)
        guard.__exit__(None, None, None)


class NumpyErrorCarrier:
    """numpy 1.x's error state (``np.seterr``, ``np.errstate``), kept per thread there."""

    __slots__ = ("_get", "_set")

    def __init__(self, get: Callable[[], Any], set_: Callable[[Any], None]) -> None:
        self._get = get
        self._set = set_

    def __repr__(self) -> str:
        return "<asyncfork numpy errstate carrier>"

    def capture(self) -> Any:
        return self._get()

    def enter(self, state: Any) -> Any:
        previous = self._get()
        self._set(state)
        return previous

    def exit(self, token: Any) -> None:
        self._set(token)


def _torch(module: ModuleType) -> TorchCarrier | None:
    return TorchCarrier(module) if hasattr(module, "_C") else None


def _numpy(module: ModuleType) -> NumpyErrorCarrier | None:
    # numpy 1.x: geterrobj/seterrobj, one call each way. numpy 2 removed them, and keeps
    # the error state in a context variable: forks have it already.
    get, set_ = getattr(module, "geterrobj", None), getattr(module, "seterrobj", None)
    if get is None or set_ is None:
        return None
    return NumpyErrorCarrier(get, set_)


# module name -> the function that makes its carrier (None: nothing to carry for it).
BUILTIN: tuple[tuple[str, Callable[[ModuleType], object | None]], ...] = (
    ("torch", _torch),
    ("numpy", _numpy),
)
