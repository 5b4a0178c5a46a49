"""The ranker: unbiased learning to rank from click logs (two-tower, Beam, TF Serving)."""
import re
from pathlib import Path

from setuptools import find_packages, setup

VERSION = re.search(r'__version__ = "([^"]+)"', Path(__file__).with_name("ranker").joinpath(
    "__init__.py").read_text()).group(1)

# The pinned stack; tensorflow-ranking 0.5.5 needs tensorflow<2.16 (it imports tf.estimator).
REQUIRED = [
    "tensorflow==2.15.1",
    "tensorflow-ranking==0.5.5",
    "tensorflow-recommenders==0.7.7",
    "apache-beam[tfrecord]==2.77.0",
    "google-crc32c",  # Beam's TFRecord writer falls back to a slow pure-Python CRC without it
    "tensorflow-serving-api==2.15.1",
    "protobuf>=4.25,<4.26",
    "numpy<2",
    "pyarrow",
    "matplotlib",
]

setup(
    name="ranker",
    version=VERSION,
    description="Two-tower unbiased learning to rank: Beam preprocessing, Keras training, TF Serving export",
    python_requires=">=3.11,<3.12",
    packages=find_packages(exclude=("tests", "benchmarks")),
    install_requires=REQUIRED,
    # lightgbm in `test` too: the tree-peer tests then run in CI (xgboost's, 230 MB, skip there);
    # moto's S3 server (flask) for tests/test_object_storage.py, which CI runs with the aws extra
    # pytest-xdist: the suite runs in one process per core (pytest.ini)
    extras_require={"test": ["pytest", "pytest-xdist", "hypothesis", "lightgbm>=4.1", "moto[s3]>=5", "flask",
                             "flask-cors"],
                    # peers for benchmarks (ranker.peers, benchmarks/): never in the runtime install
                    "bench": ["xgboost", "lightgbm>=4.1", "deepctr"],
                    # Beam engines and object stores for preprocess (--runner DaskRunner, gs://, s3://)
                    "dask": ["apache-beam[dask]==2.77.0", "distributed"],
                    "gcp": ["apache-beam[gcp]==2.77.0"],
                    # tensorflow-io: TF 2.15's s3:// for train/evaluate/export. 0.34.0, not 0.36.0
                    # (the build for TF 2.15): 0.35+ abort at exit once S3 was used ("pure virtual
                    # method called", exit 134: tensorflow/io#1912, fixed after the last release).
                    "aws": ["apache-beam[aws]==2.77.0", "tensorflow-io==0.34.0"]},
    entry_points={"console_scripts": ["ranker=ranker.cli:main"]},
)
