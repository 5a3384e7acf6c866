"""Fuzz of the importer: hypothesis over mutated valid models (dropped inputs,
renamed outputs, wrong dtypes and dims, shuffled/dropped/duplicated nodes,
perturbed attributes, truncated and flipped bytes). Importing and running the
passes ends in success or one clean QDeployError line, nothing else.
bench/fuzz_import.py runs the same mutations much longer (bench/RESULTS.md)."""
import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.badinput.mutations import MUTATIONS, base_models, outcome

BASES = base_models()


@settings(max_examples=100, deadline=10_000, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(base=st.sampled_from(sorted(BASES)), mutation=st.sampled_from(MUTATIONS),
       seed=st.integers(0, 2**32 - 1))
def test_mutated_models_import_or_fail_in_one_line(tmp_path, base, mutation, seed):
    path = tmp_path / f"{base}_{mutation.__name__}.onnx"
    path.write_bytes(mutation(BASES[base], random.Random(seed)))
    outcome(path)   # "ok" or "error: <one line>"; any other exception fails the test
