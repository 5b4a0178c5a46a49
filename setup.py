"""The ranker: unbiased learning to rank from click logs (two-tower, Beam, TF Serving)."""
from setuptools import find_packages, setup

# The pinned stack of ../shared/SPEC.md; tensorflow-ranking 0.5.5 needs tensorflow<2.16.
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
    version="0.1.0",
    description="Two-tower unbiased learning to rank: Beam preprocessing, Keras training, TF Serving export",
    python_requires=">=3.11,<3.12",
    packages=find_packages(exclude=("tests", "benchmarks")),
    install_requires=REQUIRED,
    extras_require={"test": ["pytest", "hypothesis"]},
    entry_points={"console_scripts": ["ranker=ranker.cli:main"]},
)
