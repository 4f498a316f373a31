"""pyproject.toml: setuptools reads it without a deprecation warning, and the build requirements allow what it uses."""

import tomllib
import warnings

import pytest

from tests.helpers import REPO

setuptools = pytest.importorskip("setuptools")
SETUPTOOLS_MAJOR = int(setuptools.__version__.split(".")[0])


@pytest.mark.skipif(SETUPTOOLS_MAJOR < 77, reason=f"this environment's setuptools {setuptools.__version__} predates "
                    "the one the build requires (pip builds in an isolated environment with setuptools>=77)")
def test_setuptools_reads_the_project_table_without_deprecation_warnings():
    from setuptools.config.pyprojecttoml import apply_configuration
    from setuptools.dist import Distribution

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        distribution = apply_configuration(Distribution(), REPO / "pyproject.toml")
    deprecations = [str(w.message).splitlines()[0] for w in caught if "deprecat" in str(w.message).lower()]
    assert deprecations == []
    assert distribution.metadata.license_expression == "Apache-2.0"
    # An SPDX string for project.license needs setuptools 77 (PEP 639); an older build backend would refuse it.
    requires = tomllib.loads((REPO / "pyproject.toml").read_text())["build-system"]["requires"]
    assert requires == ["setuptools>=77"]
