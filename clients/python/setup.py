"""Build hook of pancap-client: the gRPC stubs are generated from the
repository's proto (gen_stubs.py) whenever the package is built, so
``pip install clients/python`` is the only step. Metadata is in pyproject.toml.

They are generated before setup() runs because every build step, metadata
included, needs the pancap_client._gen package to exist."""

import os
import sys

from setuptools import setup

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen_stubs  # noqa: E402

if gen_stubs.main() != 0:
    sys.exit("pancap-client: generating the gRPC stubs failed (see above)")

setup()
