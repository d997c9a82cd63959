"""Scripted callables forked onto torch's own inter-op pool, through ``torch.jit.fork``.

A TorchScript function, a scripted (or traced) module, or a method of one, runs with no
GIL between its ops when TorchScript itself forks it: ``torch.jit.fork`` called from
TorchScript launches the call on torch's inter-op pool and returns a ``torch.jit.Future``.
Called from Python, ``torch.jit.fork`` only calls the function there and then, so each
scripted callable gets a *launcher* once: a small TorchScript function (or a method of a
holder module, for a module or one of its methods) that takes the callable's arguments
and returns ``torch.jit.fork(callable, ...)``. The launcher is the fork's executor, so
the fork is an executor fork in every other respect (``_executor_fork``): its scope, its
cancellation before start, its outcome posted to its loop from torch's thread, its notes;
only a root fork from another thread is launched inside ``fork()``, not on its loop.

Nothing here imports torch: ``_fork`` asks only when the program has imported it.
"""

# torch's scripting internals (concrete types, method definition) have no public spelling.
# pyright: reportPrivateUsage=false, reportUnknownMemberType=false, reportUnknownVariableType=false
# pyright: reportUnknownArgumentType=false, reportUnknownLambdaType=false

from __future__ import annotations

import logging
import sys
import threading
import typing
import weakref
from collections.abc import Callable
from concurrent.futures import Executor
from concurrent.futures import Future as ConcurrentFuture
from functools import partial
from typing import TYPE_CHECKING, Any

from . import _carriers

if TYPE_CHECKING:
    from ._future import Future
    from ._scope import Node

logger = logging.getLogger("asyncfork")

_modules = sys.modules
_lock = threading.Lock()
# One launcher per scripted callable, or None where none could be made (the thread path).
# Weak keys, and launchers that hold torch's C++ objects only: a dropped model is freed.
_launchers: weakref.WeakKeyDictionary[Any, TorchScriptLauncher | None] = weakref.WeakKeyDictionary()
_kinds: tuple[type, ...] = ()  # ScriptFunction, ScriptMethod, ScriptModule, once torch is seen
_holder_class: type | None = None


def torchscript_executor(func: Any) -> TorchScriptLauncher | None:
    """The launcher that forks ``func`` onto torch's inter-op pool, or None for the thread
    path: ``func`` is not scripted, global module hooks are registered, or its signature
    is one no launcher can declare. Called by ``fork()`` on its sync branch, only once the
    program imported torch."""
    kinds = _kinds or _scripted_kinds()
    if not kinds or not isinstance(func, kinds):
        return None
    if isinstance(func, kinds[2]) and _python_hooks(func):
        return None  # they run in a worker thread, as module(x) there runs them
    try:
        return _launchers[func]
    except KeyError:
        pass
    except TypeError:  # unhashable (a scripted __eq__ without __hash__): no cache, no launcher
        return None
    with _lock:  # one compilation per callable, however many threads fork it at once
        if func in _launchers:
            return _launchers[func]
        launcher = _launchers[func] = _make_launcher(func)
    return launcher


def _scripted_kinds() -> tuple[type, ...]:
    """torch's scripted types; none while torch is still being imported (by another thread)."""
    global _kinds
    torch: Any = _modules["torch"]
    try:
        _kinds = (torch.jit.ScriptFunction, torch._C.ScriptMethod, torch.jit.ScriptModule)
    except AttributeError:  # half imported: ask again on the next fork
        return ()
    return _kinds


def _python_hooks(module: Any) -> bool:
    """Global module hooks (``register_module_forward_hook``): ``module(x)`` in Python runs
    them, a scripted call does not. A ScriptModule takes no hooks of its own in Python."""
    hooks: Any = _modules["torch"].nn.modules.module
    return bool(hooks._global_forward_hooks or hooks._global_forward_pre_hooks)


class TorchScriptLauncher(Executor):
    """Runs one scripted callable through ``torch.jit.fork``: an executor for ``fork()``.

    ``launch(*args, **kwargs)`` is TorchScript and returns torch's Future at once; torch
    runs the call on its inter-op pool, with the thread-local modes (grad, inference,
    autocast) of the thread that launched it. So the fork's carried state is entered
    around the launch, wherever it happens: inside ``fork()`` for a root fork from another
    thread (``launches_at_once``), else on the fork's loop, maybe later (a group's limit).
    """

    __slots__ = ("_defaults", "_first_default", "_launch", "name")
    # The forks' default name, the scripted callable's: asked once by fork(), it is slow.
    name: str | None

    def __init__(
        self, launch: Callable[..., Any], n_params: int, defaults: tuple[tuple[str, Any], ...]
    ) -> None:
        self.name = None
        self._launch = launch
        # (name, default) of the trailing parameters that have one: filled in here, so
        # that the launcher's source need not spell default values.
        self._defaults = defaults
        self._first_default = n_params - len(defaults)

    def submit_fork(self, fut: Future[Any], func: Any, args: Any, kwargs: Any) -> TorchOutcome:
        """Launch the call with the fork's carried state; its outcome, read from torch's
        Future when the call ends. Once launched it cannot be cancelled."""
        carried = fut._carried
        entered = None if carried is None else _carriers.enter(carried)
        try:
            return self._start(args, kwargs)
        finally:
            if entered is not None:
                _carriers.exit_(entered)

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> ConcurrentFuture[Any]:
        """Launch ``fn(*args, **kwargs)`` (this launcher's callable) in this thread's modes."""
        cf: ConcurrentFuture[Any] = ConcurrentFuture()
        cf.set_running_or_notify_cancel()
        outcome = self._start(args, kwargs)
        outcome.add_done_callback(partial(_copy_outcome, cf))
        return cf

    def _start(self, args: Any, kwargs: Any) -> TorchOutcome:
        if self._defaults:
            given = len(args) - self._first_default
            missing = [
                (name, value)
                for i, (name, value) in enumerate(self._defaults)
                if i >= given and name not in kwargs
            ]
            if missing:
                kwargs = {**kwargs, **dict(missing)}
        try:
            return TorchOutcome(self._launch(*args, **kwargs), None)
        except BaseException as exc:
            # Bad arguments (or a Ctrl-C): the fork's outcome, settled on its loop like any
            # other, since a launch inside fork() runs off the loop (launches_at_once).
            return TorchOutcome(None, exc)


class TorchOutcome:
    """A launched call's outcome, as an executor fork reads one (``_executor_fork`` uses
    these methods of a ``concurrent.futures.Future``): torch's Future itself, so that
    torch's thread runs nothing but the done-callback that posts the outcome to the loop."""

    __slots__ = ("_error", "_future")

    def __init__(self, torch_future: Any, error: BaseException | None) -> None:
        self._future = torch_future
        self._error = error

    def add_done_callback(self, fn: Callable[[TorchOutcome], object]) -> None:
        if self._future is None:
            fn(self)  # the launch failed: done already
        else:
            self._future.add_done_callback(partial(_call_back, fn, self))

    def cancel(self) -> bool:
        return False  # launched: torch cannot take it back

    def cancelled(self) -> bool:
        return False

    def exception(self) -> BaseException | None:
        """Once done (torch raises its stored error again on each read: kept the first)."""
        if self._error is None and self._future is not None:
            try:
                self._future.value()
            except BaseException as exc:
                self._error = exc
        return self._error

    def result(self) -> Any:
        error = self.exception()
        if error is not None:
            raise error
        return self._future.value()


def _call_back(fn: Callable[[TorchOutcome], object], outcome: TorchOutcome, _: Any) -> None:
    if not _callback_thread.state_kept:
        _keep_thread_state()
    fn(outcome)


class _CallbackThread(threading.local):
    state_kept = False


_callback_thread = _CallbackThread()
# How many threads kept their Python thread state (one per torch pool thread, at most).
KEPT_THREAD_STATES = [0]


def _keep_thread_state() -> None:
    """Keep this thread's Python thread state for the callbacks to come.

    torch calls a Future's Python callback in the pool thread that finished the call, a
    thread Python did not start: pybind11 makes a Python thread state for each call and
    destroys it after, which costs more than the callback itself and held up the pool
    thread's next call (a 4-part model forked this way ran 5 % slower than TorchScript's
    own fork). One ``PyGILState_Ensure`` never released keeps the thread state; torch's
    pool threads live as long as the process. On a thread Python knows it only counts.
    """
    _callback_thread.state_kept = True  # in this thread state: kept from now on
    try:
        import ctypes

        ctypes.pythonapi.PyGILState_Ensure()
    except (ImportError, AttributeError, OSError):  # not CPython: nothing to keep
        return
    KEPT_THREAD_STATES[0] += 1


def launches_at_once(on_loop: bool, deadline: float | None, scope: Node) -> bool:
    """Whether ``fork()`` launches a scripted call itself, in the forking thread, rather than
    on its loop: a root fork from another thread than its loop's, with no timeout. The loop
    would only add a wait for itself; a root fork has no parent whose cancel, still on its
    way to the loop, could have to stop the launch (a child waits for the loop instead)."""
    return not on_loop and deadline is None and scope._is_root_set and not scope._cancel_requested


def _copy_outcome(cf: ConcurrentFuture[Any], outcome: TorchOutcome) -> None:
    """``submit``'s Future takes the outcome (on torch's thread, or this one)."""
    error = outcome.exception()
    if error is None:
        cf.set_result(outcome.result())
    else:
        cf.set_exception(error)


def _make_launcher(func: Any) -> TorchScriptLauncher | None:
    torch: Any = _modules["torch"]
    try:
        if isinstance(func, torch.jit.ScriptFunction):
            launcher = _function_launcher(torch, func)
        elif isinstance(func, torch._C.ScriptMethod):
            launcher = _method_launcher(torch, func.owner, func.name, func.schema)
        elif func._c._has_method("forward"):
            launcher = _method_launcher(torch, func._c, None, func._c._get_method("forward").schema)
        else:
            return None  # a module with no forward: calling it fails, in a worker thread
    except Exception:
        # A signature the launcher cannot spell (a script class argument, say): the
        # callable still runs, in a worker thread, where a scripted call holds no GIL
        # between its ops either.
        logger.debug("asyncfork: no TorchScript launcher for %r", func, exc_info=True)
        return None
    return launcher


def _type_names(torch: Any) -> dict[str, Any]:
    """How the launcher's source resolves the names of the types it spells."""
    return {
        "Tensor": torch.Tensor,
        "Device": torch.device,
        "List": typing.List,  # noqa: UP006 - torch spells its types so
        "Dict": typing.Dict,  # noqa: UP006
        "Tuple": typing.Tuple,  # noqa: UP006
        "Optional": typing.Optional,
        "Union": typing.Union,
        "Any": typing.Any,
        "NoneType": type(None),
        "torch": torch,
    }


def _signature(params: list[Any]) -> tuple[str, str, tuple[tuple[str, Any], ...]]:
    """The launcher's parameters, the fork's arguments, and the defaults to fill in."""
    declared: list[str] = []
    passed: list[str] = []
    defaults: list[tuple[str, Any]] = []
    for param in params:
        name = param.name
        declared.append(f"{name}: {param.type.annotation_str}")
        passed.append(f"{name}={name}" if param.kwarg_only else name)
        if param.has_default_value():
            defaults.append((name, param.default_value))
        elif defaults:
            raise ValueError("a required parameter after one with a default")
    return ", ".join(declared), ", ".join(passed), tuple(defaults)


def _function_launcher(torch: Any, func: Any) -> TorchScriptLauncher:
    params = list(func.schema.arguments)
    declared, passed, defaults = _signature(params)
    # Named as the user's function, so that torch's argument errors name it.
    name = func.name
    if {"torch", "scripted"} & {param.name for param in params}:
        raise ValueError("a parameter named torch or scripted")
    source = f"def {name}({declared}):\n    return torch.jit.fork(scripted, {passed})\n"
    names = {**_type_names(torch), "scripted": func}
    unit = torch.jit.CompilationUnit()
    unit.define(source, rcb=names.get)
    return TorchScriptLauncher(getattr(unit, name), len(params), defaults)


def _method_launcher(
    torch: Any, owner: Any, method: str | None, schema: Any
) -> TorchScriptLauncher:
    """A launcher for a module's call (``method`` None: its scripted hooks run too) or
    one of its methods: a method of a holder module whose one submodule is the callable's
    module. Holders of modules of one type share a type, and so the launcher's definition."""
    params = list(schema.arguments)[1:]  # without self
    if {"self", "torch"} & {param.name for param in params}:
        raise ValueError("a parameter named self or torch")
    declared, passed, defaults = _signature(params)
    recursive = torch.jit._recursive
    # create_script_module is what torch.jit.script does, without its deprecation warning.
    holder = recursive.create_script_module(
        _holder(torch)(recursive.wrap_cpp_module(owner)), recursive.infer_methods_to_compile
    )
    if method is None and (owner._get_forward_hooks() or owner._get_forward_pre_hooks()):
        name, target = "__af_call", "self.module"  # its scripted hooks run, as module(x)'s
    else:
        name = method or "forward"
        target = f"self.module.{name}"
    if not holder._c._has_method(name):
        sep = ", " if declared else ""
        source = (
            f"def {name}(self{sep}{declared}):\n    return torch.jit.fork({target}, {passed})\n"
        )
        holder._c._define(holder._concrete_type, source, _type_names(torch).get)
    # The method of the holder's C++ object: it holds the module's C++ object, never the
    # Python module, so the weak cache entry dies with the user's module.
    return TorchScriptLauncher(holder._c._get_method(name), len(params), defaults)


def _holder(torch: Any) -> type:
    """The holder module's class, made once torch is there (asyncfork never imports it)."""
    global _holder_class
    if _holder_class is None:

        def __init__(self: Any, module: Any) -> None:
            torch.nn.Module.__init__(self)
            self.module = module

        _holder_class = type(
            "TorchScriptHolder", (torch.nn.Module,), {"__init__": __init__, "__module__": __name__}
        )
    return _holder_class
