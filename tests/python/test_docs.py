"""The API documents agree with the server and the SDK."""

from __future__ import annotations

from pathlib import Path

import pytest

from kchain import errors

# scripts/python-env.sh installs both; the GPU machine, which has no package index, may lack them.
yaml = pytest.importorskip("yaml")
openapi_spec_validator = pytest.importorskip("openapi_spec_validator")

DOCS = Path(__file__).resolve().parents[2] / "docs"


def load_spec() -> dict:
    return yaml.safe_load((DOCS / "openapi.yaml").read_text())


def test_the_openapi_document_is_valid_openapi() -> None:
    openapi_spec_validator.validate(load_spec())


def test_every_error_code_in_the_spec_has_an_sdk_class_and_back() -> None:
    spec_codes = set(load_spec()["components"]["schemas"]["Error"]["properties"]["error"]
                     ["properties"]["code"]["enum"])
    sdk_codes = set(errors._BY_CODE)
    assert spec_codes == sdk_codes


def test_every_error_code_is_in_the_reference() -> None:
    reference = (DOCS / "api.md").read_text()
    for code in errors._BY_CODE:
        assert f"`{code}`" in reference, code
