"""Running the suite: `check_backend` and the pytest base class `BackendConformance`."""

from __future__ import annotations

import traceback
from collections.abc import Callable, Iterable

from amygdala.backends._protocol import Backend
from amygdala.testing._checks import (
    CHECKS,
    check_ablation_modes,
    check_batching_invariance,
    check_cached_generation_under_steering,
    check_capture_shapes,
    check_edit_positions_are_absolute,
    check_edits_at_every_residual_point,
    check_forward_stop_at,
    check_hooks_removed_after_exceptions,
    check_identity,
    check_identity_edit,
    check_logits_of_ids,
    check_neuron_ablation_is_local,
    check_per_row_ablation,
    check_pooled_mean_is_token_mean,
    check_typed_errors,
    check_weight_shapes,
)
from amygdala.testing._parity import PARITY_CHECKS

__all__ = ["BackendConformance", "check_backend"]

# ----- running the suite ------------------------------------------------------------------


def _failure(name: str, exc: BaseException) -> str:
    if isinstance(exc, AssertionError):
        return f"- {name}: {exc}"
    where = traceback.extract_tb(exc.__traceback__)[-1]
    return (f"- {name}: raised {type(exc).__name__}: {exc} "
            f"({where.filename}:{where.lineno})")


def _one(check: Callable[[Backend], None], make: Callable[[], Backend]) -> Callable[[], None]:
    return lambda: check(make())


def _two(check: Callable[[Backend, Backend], None], make: Callable[[], Backend],
         make_reference: Callable[[], Backend]) -> Callable[[], None]:
    return lambda: check(make(), make_reference())


def check_backend(
    make_backend: Callable[[], Backend], *,
    reference: Callable[[], Backend] | None = None,
    only: Iterable[str] | None = None,
) -> None:
    """Run the conformance suite on a backend; raise `AssertionError` listing every failure.

    Args:
        make_backend: builds a fresh backend; called once per check, so a check that
            leaves a hook behind cannot make another one fail.
        reference: builds a trusted backend on the same weights (e.g. the torch backend
            on its own copy of the model); adds `PARITY_CHECKS`.
        only: names of the checks to run (keys of `CHECKS` and `PARITY_CHECKS`);
            default all.

    Raises:
        AssertionError: one or more checks failed (each named, with its reason; a check
            that raised another exception is reported with where it was raised).
        KeyError: ``only`` names a check that does not exist.
    """
    runs = {name: _one(check, make_backend) for name, check in CHECKS.items()}
    if reference is not None:
        runs |= {name: _two(check, make_backend, reference)
                 for name, check in PARITY_CHECKS.items()}
    if only is not None:
        wanted = list(only)
        unknown = [n for n in wanted if n not in CHECKS and n not in PARITY_CHECKS]
        if unknown:
            raise KeyError(f"unknown checks {unknown}; expected names from "
                           f"{', '.join([*CHECKS, *PARITY_CHECKS])}")
        runs = {n: run for n, run in runs.items() if n in wanted}
    failures: list[str] = []
    for name, run in runs.items():
        try:
            run()
        except Exception as exc:
            failures.append(_failure(name, exc))
    if failures:
        raise AssertionError(f"{len(failures)} of {len(runs)} backend conformance checks "
                             "failed:\n" + "\n".join(failures))


class BackendConformance:
    """Base class for a pytest class: subclass it as ``Test...`` and define `make_backend`.

    Each check becomes one test; define `make_reference` too for the parity checks.

    >>> class TestMyBackend(BackendConformance):  # doctest: +SKIP
    ...     def make_backend(self):
    ...         return MyBackend(load_model("my-small-model"))
    """

    def make_backend(self) -> Backend:
        """Build a fresh backend (called once per test)."""
        raise NotImplementedError("define make_backend() in the subclass")

    def make_reference(self) -> Backend | None:
        """Build a trusted backend on the same weights, or None to skip parity."""
        return None

    def _pair(self, name: str) -> None:
        reference = self.make_reference()
        if reference is not None:
            PARITY_CHECKS[name](self.make_backend(), reference)

    def test_identity(self) -> None:
        check_identity(self.make_backend())

    def test_capture_shapes(self) -> None:
        check_capture_shapes(self.make_backend())

    def test_batching_invariance(self) -> None:
        check_batching_invariance(self.make_backend())

    def test_pooled_mean_is_token_mean(self) -> None:
        check_pooled_mean_is_token_mean(self.make_backend())

    def test_logits_of_ids(self) -> None:
        check_logits_of_ids(self.make_backend())

    def test_forward_stop_at(self) -> None:
        check_forward_stop_at(self.make_backend())

    def test_identity_edit(self) -> None:
        check_identity_edit(self.make_backend())

    def test_edits_at_every_residual_point(self) -> None:
        check_edits_at_every_residual_point(self.make_backend())

    def test_edit_positions_are_absolute(self) -> None:
        check_edit_positions_are_absolute(self.make_backend())

    def test_hooks_removed_after_exceptions(self) -> None:
        check_hooks_removed_after_exceptions(self.make_backend())

    def test_cached_generation_under_steering(self) -> None:
        check_cached_generation_under_steering(self.make_backend())

    def test_neuron_ablation_is_local(self) -> None:
        check_neuron_ablation_is_local(self.make_backend())

    def test_ablation_modes(self) -> None:
        check_ablation_modes(self.make_backend())

    def test_per_row_ablation(self) -> None:
        check_per_row_ablation(self.make_backend())

    def test_typed_errors(self) -> None:
        check_typed_errors(self.make_backend())

    def test_weight_shapes(self) -> None:
        check_weight_shapes(self.make_backend())

    def test_parity_capture(self) -> None:
        self._pair("parity_capture")

    def test_parity_edits(self) -> None:
        self._pair("parity_edits")

    def test_parity_ablations(self) -> None:
        self._pair("parity_ablations")

    def test_parity_generation(self) -> None:
        self._pair("parity_generation")
