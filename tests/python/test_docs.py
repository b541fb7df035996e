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


def test_the_gateway_serves_the_openapi_document_unchanged(gateway, keyed_gateway) -> None:
    import httpx

    expected = (DOCS / "openapi.yaml").read_bytes()
    for url in (gateway.url, keyed_gateway.url):  # no key needed, also when keys are on
        for path in ("/openapi.yaml", "/v1/openapi.yaml"):
            response = httpx.get(url + path)
            assert response.status_code == 200, (url, path, response.text[:200])
            assert response.headers["content-type"] == "application/yaml"
            assert response.content == expected, path
    assert httpx.post(gateway.url + "/openapi.yaml", content=b"").status_code == 405


def test_the_readme_shows_what_the_demo_prints(gateway) -> None:
    """Each line of the README's demo output starts as a line kchain-demo prints now."""
    import re
    import subprocess

    from conftest import BUILD, REPO

    readme = (REPO / "README.md").read_text()
    block = readme.split("`scripts/demo.sh` prints", 1)[1].split("```\n", 2)[1]
    demo = subprocess.run([str(BUILD / "bin" / "kchain-demo"), "--url", gateway.url,
                           "--samples", str(BUILD / "samples")],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
    assert demo.returncode == 0, demo.stdout
    # A line's shape: its words, with every number replaced.
    def shape(line: str) -> list:
        # Numbers become N (a count in a word, as in "x200", stays); the output values go.
        return re.sub(r"-?\d+\.\d+(e[+-]?\d+)?|\b\d+\b", "N", line.split(" [")[0]).split()

    printed = [shape(line) for line in demo.stdout.splitlines()]
    for line in block.splitlines():
        assert shape(line) in printed, f"the README shows {line!r}; the demo prints:\n{demo.stdout}"
