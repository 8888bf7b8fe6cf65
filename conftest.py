"""The repository's own test configuration: nothing beyond the detbench plugin.

Options, markers, Hypothesis profiles and the fixture chain (dataset → baseline → workbench →
backend) come from ``detbench.plugin``, registered under the ``pytest11`` entry point, so the
repository's tests and a user's ``pytest --pyargs detbench.suite`` run on the same fixtures.
"""
