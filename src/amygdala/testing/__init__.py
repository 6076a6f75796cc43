"""The backend conformance suite: what every `Backend` must do, as plain functions.

A third-party backend runs it from its own tests::

    from amygdala.testing import check_backend

    def test_my_backend_conforms():
        check_backend(lambda: MyBackend(load_model("path/to/a/small/model")))

`check_backend` runs every check in `CHECKS` (and, given a ``reference`` backend on
the same weights, every check in `PARITY_CHECKS`) and raises one `AssertionError`
naming each check that failed and why. Each check is also a plain function of a
backend, so a test suite can run them one by one; `BackendConformance` is a base
class whose ``test_*`` methods pytest collects in a subclass.

The checks need a model of at least 2 layers, 2 attention heads and 10 MLP neurons,
and a tokenizer that turns each of `TEXTS` into a few tokens. Nothing here imports
pytest.
"""

from amygdala.testing._checks import CHECKS
from amygdala.testing._common import PROMPT, TEXTS
from amygdala.testing._conformance import BackendConformance, check_backend
from amygdala.testing._parity import PARITY_CHECKS

__all__ = ["CHECKS", "PARITY_CHECKS", "PROMPT", "TEXTS", "BackendConformance",
           "check_backend"]
