"""asyncfork's own structure and error tests, run again in serial mode, with the same results.

The tests named in ``SUBSET`` are imported from their modules and run here under
``@pytest.mark.asyncfork_serial`` (every fork inline, inside ``fork()``): a program correct
in parallel gives the same result serially. The others are listed in ``EXCLUDED`` with the
reason they cannot hold serially; ``test_every_test_is_classified`` keeps the two lists
complete, so a new test in those modules has to be placed in one of them.

Their async tests run here on asyncio's loop only: serial mode runs a coroutine fork by
stepping the loop from inside ``fork()``, which uvloop does not allow (tests/test_serial.py
checks the error it gives there).
"""

from __future__ import annotations

import inspect
import sys

import pytest
import test_cancel
import test_fork
import test_group
import test_scope

import asyncfork as af

pytestmark = pytest.mark.asyncfork_serial

# From Python 3.12 a finished frame keeps its caller's frame (f_back) through coroutine frames
# too, so a serial fork's traceback reaches fork()'s own frame, which holds the Future: a cycle.
FRAMES_CHAIN = sys.version_info >= (3, 12)

MODULES = (test_fork, test_group, test_scope, test_cancel)

SUBSET: dict[str, tuple[str, ...]] = {
    "test_fork": (
        "test_every_keyword_goes_to_func",
        "test_callable_instance_with_async_call_is_a_coroutine_fork",
        "test_callable_instances_are_classified_by_class_and_own_attributes",
        "test_partial_of_coroutine_function_is_a_coroutine_fork",
        "test_coroutine_fork_returning_an_awaitable_returns_it",
        "test_fork_of_coroutine_object_is_typeerror_showing_right_call",
        "test_finished_coroutine_object_is_type_error",
        "test_fork_of_non_callable_is_typeerror_naming_it",
        "test_fork_of_async_generator_function_is_typeerror_naming_it",
        "test_instance_with_async_generator_call_is_type_error",
        "test_coroutine_function_with_executor_is_typeerror",
        "test_fork_options_of_the_wrong_type_are_type_errors",
        "test_boolean_fork_options_must_be_bools",
        "test_fork_options_messages_say_what_was_given",
        "test_a_str_subclass_name_is_kept_as_a_plain_str",
        "test_timeout_and_limit_of_the_wrong_type_are_type_errors",
        "test_bad_on_cancel_and_limit_are_valueerror_naming_the_option",
        "test_fork_reprs_say_where_they_fork",
    ),
    "test_group": (
        "test_group_repr_shows_name_and_state",
        "test_group_name_must_be_a_str",
        "test_group_name_of_a_str_subclass_is_kept_as_a_plain_str",
        "test_group_cannot_be_entered_twice",
        "test_async_group_outside_a_task_is_runtime_error",
        "test_fork_into_group_never_entered_raises_runtime_error",
        "test_fork_into_exited_group_raises_runtime_error",
        "test_plain_fork_and_g_fork_both_join_the_group",
        "test_plain_fork_in_group_body_is_fail_fast",
        "test_group_child_failure_is_not_logged_separately",
        "test_nested_groups_keep_their_nesting",
        "test_nested_group_in_body_keeps_nesting",
        "test_nested_sync_groups_keep_their_nesting",
        "test_fork_after_group_cancel_raises_cancelled_in_body_swallowed",
        "test_fork_after_g_cancel_from_another_thread_is_refused_and_swallowed",
        "test_fork_refused_after_g_cancel_can_be_caught_in_the_body",
        "test_group_cancel_before_entry_or_after_exit_does_nothing",
        "test_plain_fork_in_async_group_respects_its_limit",
        "test_plain_fork_in_sync_group_respects_its_limit",
        "test_waiting_worker_does_not_run_limited_group_children_inline",
        "test_child_queued_behind_limit_sees_the_context_of_its_own_fork_call",
        "test_group_timeout_cancels_and_raises_timeout_error",
        "test_group_timeout_error_cause_is_cancelled_error",
        "test_group_timed_out_with_real_failure_raises_the_failure",
        "test_sync_group_timeout_raises_timeout_error",
        "test_sync_group_timeout_cancels_children_and_raises_timeout_error",
        "test_sync_group_timeout_error_cause_is_cancelled_error",
        "test_fork_into_timed_out_sync_group_raises_cancelled",
        "test_sync_group_timeout_timer_is_cancelled_on_the_loop_thread",
        "test_sync_group_runs_children_on_background_loop_and_workers",
        "test_sync_group_failing_fork_raises_cancelled_in_body",
        "test_sync_group_exited_in_another_context_still_joins",
        "test_sync_group_on_loop_thread_raises_deadlock_error",
        "test_sync_group_in_loop_thread_is_deadlock_error",
        "test_sync_group_deadlock_error_says_what_to_write",
    ),
    "test_scope": (
        "test_fork_inside_coroutine_fork_is_its_child",
        "test_fork_inside_sync_fork_thread_is_its_child",
        "test_fork_in_context_of_finished_coroutine_parent_raises",
        "test_fork_from_thread_left_behind_by_sync_parent_raises",
        "test_child_failure_does_not_interrupt_parent_and_is_raised_at_join",
        "test_two_unretrieved_child_failures_are_both_raised_at_the_join",
        "test_failure_retrieved_by_coroutine_parent_is_not_raised_again",
        "test_failure_retrieved_by_sync_parent_is_not_raised_again",
        "test_parent_error_comes_first_in_group_with_unretrieved_child_failures",
        "test_parent_error_without_unretrieved_child_failure_is_unwrapped",
        *(
            ()
            if FRAMES_CHAIN
            else ("test_never_retrieved_root_failure_is_logged_without_cyclic_gc",)
        ),
        "test_retrieved_root_failure_is_not_logged",
        "test_child_failures_are_not_logged",
    ),
    "test_cancel": (),
}

# Why a test cannot hold serially. Each excluded test does one of these.
LATER = (
    "a fork waits for something that the code after its fork() call (the test, or a sibling "
    "forked after it) does: serially that code runs only once the fork has finished, so the "
    "fork ends with serial mode's DeadlockError, or runs into the test's own timeout"
)
CANCELS = (
    "its subject is a fork cancelled while it runs or before it starts: serially fork() "
    "returns a fork that has finished already, so there is nothing left to cancel"
)
THREADS = (
    "it checks where a fork ran (a worker thread, the background loop's thread): serially a "
    "sync fork runs in the thread that forks it"
)
INTERRUPTS = (
    "a fork's KeyboardInterrupt or SystemExit: serially it goes on in the code that forked it, "
    "as from code called inline, instead of being the fork's failure"
)
CONCURRENT = "it counts forks running at once, which serially is never more than one"
CYCLE = (
    "Python 3.12+: the failed fork's traceback reaches the frames of fork() that ran it "
    "inline, a cycle, so the never-retrieved report waits for the cyclic garbage collector"
)

EXCLUDED: dict[str, dict[str, str]] = {
    "test_fork": {
        "test_sync_callable_returning_coroutine_runs_it_on_host_loop": THREADS,
        "test_sync_callable_returning_coroutine_from_plain_thread": THREADS,
        "test_sync_callable_returning_coroutine_is_the_same_fork": LATER,
    },
    "test_group": {
        "test_group_first_failure_cancels_body_and_other_children": LATER,
        "test_group_holds_only_real_failures_never_cancellations": LATER,
        "test_group_body_error_is_wrapped_with_child_failures": LATER,
        "test_group_body_base_exception_propagates_unwrapped": LATER,
        "test_group_child_base_exception_reraised_as_is": LATER,
        "test_fork_into_failing_group_from_child_raises_cancelled": LATER,
        "test_group_cancel_cancels_children_and_body_quietly": CANCELS,
        "test_group_cancel_from_another_thread": CANCELS,
        "test_outside_cancel_of_owner_after_g_cancel_propagates_from_group": CANCELS,
        "test_group_owner_cancelled_from_outside_during_the_exit": CANCELS,
        "test_group_owner_cancelled_from_outside_during_the_body": CANCELS,
        "test_group_limit_caps_concurrency_and_keeps_fork_order": CONCURRENT,
        "test_group_limit_applies_to_sync_children": CONCURRENT,
        "test_failing_limited_group_never_starts_its_queued_children": CONCURRENT,
        "test_child_awaiting_a_sibling_queued_for_its_only_slot_raises_deadlock_error": CONCURRENT,
        "test_sync_child_waiting_on_a_sibling_queued_for_its_only_slot_raises_deadlock_error": (
            CONCURRENT
        ),
        "test_child_awaiting_a_queued_sibling_while_another_child_holds_a_slot_waits": CONCURRENT,
        "test_group_deadline_during_failure_cleanup_raises_the_failure": LATER,
        "test_sync_group_fail_fast_cancels_siblings": LATER,
        "test_sync_group_cancel_is_quiet": CANCELS,
    },
    "test_scope": {
        "test_fork_from_thread_with_forks_copied_context_is_its_child": LATER,
        "test_fork_made_from_thread_while_parent_runs_is_joined_by_it": LATER,
        "test_coroutine_parent_resolves_only_after_children": LATER,
        "test_sync_parent_resolves_only_after_children": LATER,
        "test_parent_raising_cancels_and_joins_unfinished_children": LATER,
        "test_failure_retrieved_by_another_waiter_is_not_raised_again": LATER,
        "test_cancelled_parent_with_unretrieved_child_failure_raises_group": CANCELS,
        "test_detached_fork_is_a_root_fork": LATER,
        "test_detached_fork_from_sync_fork_is_a_root_fork": LATER,
        "test_unretrieved_root_failure_is_logged_once_on_gc": LATER,
        "test_child_base_exception_makes_base_exception_group": INTERRUPTS,
        **(
            {"test_never_retrieved_root_failure_is_logged_without_cyclic_gc": CYCLE}
            if FRAMES_CHAIN
            else {}
        ),
    },
    "test_cancel": {
        name: CANCELS
        for name, _ in inspect.getmembers(test_cancel, inspect.isfunction)
        if name.startswith("test_")
    },
}

# The subset, as this module's own tests: collected here under this module's serial mark.
_here = sys.modules[__name__]
for _module in MODULES:
    for _name in SUBSET[_module.__name__]:
        setattr(_here, _name, getattr(_module, _name))


@pytest.fixture(autouse=True)
def _asyncio_loop_only(request: pytest.FixtureRequest) -> None:
    callspec = getattr(request.node, "callspec", None)
    uvloop = callspec is not None and "uvloop" in callspec.id.split("-")
    if uvloop and inspect.iscoroutinefunction(request.node.obj):
        pytest.skip("serial mode steps only asyncio's own loop (test_serial.py: uvloop)")


def test_every_test_is_classified() -> None:
    """Every test of those modules is in the subset or excluded with a reason, not both."""
    for module in MODULES:
        tests = {
            name
            for name, func in inspect.getmembers(module, inspect.isfunction)
            if name.startswith("test_") and func.__module__ == module.__name__
        }
        included = set(SUBSET[module.__name__])
        excluded = set(EXCLUDED[module.__name__])
        assert not included & excluded
        assert tests == included | excluded, module.__name__


def test_the_subset_runs_serially() -> None:
    """This module's mark is in force: a fork here is done when fork() returns."""
    ran: list[str] = []
    fut = af.fork(ran.append, "inline")
    assert fut.done()
    assert ran == ["inline"]
