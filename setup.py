"""mftlaunch: fine-tune and evaluate code LLMs on Slurm clusters.

The base install is the submit side only (what a login node needs); the compute side's heavy
dependencies live in extras: `train` (torch, transformers, peft, bitsandbytes, deepspeed), `eval` (progress
lines, the HTML report's plots and training curves; sandboxed execution needs nothing more),
`dev` (tests).
"""
from setuptools import find_packages, setup

TORCH = "torch==2.13.0"  # the CPU build that installs from local disk on the CI machine; see README

setup(
    name="mftlaunch",
    version="0.1.0",
    description="Fine-tune and evaluate code LLMs on Slurm clusters",
    long_description=open("README.md", encoding="utf-8").read() if __import__("os").path.exists("README.md") else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["launcher*", "jobs*", "eval_sandbox*"]),
    include_package_data=True,
    package_data={
        "eval_sandbox": ["toolchains/*", "toolchains/**/*", "Apptainer.def", "Dockerfile"],
        # the pinned benchmark data, used when no data_dir is given (see its SOURCES.md)
        "jobs.code_benchmarks": ["data/SOURCES.md", "data/SHA256SUMS", "data/LICENSE-*",
                            "data/humanevalpack/*.jsonl", "data/mbpp/*.jsonl"],
    },
    install_requires=[
        "submitit>=1.5.2,<1.6",  # launcher/submitit_adapter.py: SUPPORTED
        "pyyaml>=6",
        "pydantic>=2.6,<3",
        "rich>=13",
    ],
    extras_require={
        "train": [
            TORCH,
            "transformers>=4.45",
            "peft>=0.13",
            "accelerate>=1.0",
            "tokenizers>=0.19",
            "safetensors>=0.4",
            "tensorboard>=2.14",
            # QLoRA (4-bit/8-bit base weights), on GPUs and on CPU (its pure-torch kernels); tested
            # with 0.50.2. Keep in step with jobs/training/model.py's BITSANDBYTES_REQUIREMENT.
            "bitsandbytes>=0.50.2,<0.51",
            "tqdm>=4.66",
            # deepspeed builds against the installed torch: install it with --no-build-isolation
            # after torch (tests/run.sh does), or its build pulls a CUDA torch of several GB.
            "deepspeed>=0.15",
        ],
        # the evaluate and collect stages, `mftlaunch report` / `compare`: progress lines (tqdm),
        # report plots (matplotlib, Agg) and training curves (tensorboard's event reader)
        "eval": ["tqdm>=4.66", "matplotlib>=3.8", "tensorboard>=2.14"],
        "dev": ["pytest>=8", "pytest-timeout>=2"],
    },
    entry_points={"console_scripts": ["mftlaunch=launcher.cli:main"]},
)
