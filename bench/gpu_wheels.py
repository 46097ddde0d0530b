"""``python -m bench.gpu_wheels``: the wheels an offline GPU machine lacks, for ``make gpu-check``.

Run where there is network. Downloads, at the versions of ``requirements.lock``, binary
wheels for the GPU machine's Python (Linux x86_64) of the packages its image does not
have, builds the one that PyPI has only as a source archive (antlr4, pure Python), and
removes any other wheel from the folder, so one version of each travels. Prints the total
against what may travel with the repository (64 MiB on this workplace's device machines).

The list is for an image that already has torch (CUDA), transformers, accelerate,
tokenizers, safetensors, numpy, pandas, scipy, matplotlib, pyarrow, psutil, PyYAML, tqdm,
requests, rich, typer, click, prometheus-client, py-cpuinfo, cloudpickle and nvidia-ml-py
(the device image's package list); bench/GPU_CHECK.md has the install for other machines.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from runner import lockfile

REPO = Path(__file__).resolve().parents[1]
CARRY_LIMIT_BYTES = 64 * 2**20
# What the runner imports that the image lacks, and what those import in turn.
CARRY = (
    "hydra-core",
    "omegaconf",
    "antlr4-python3-runtime",  # hydra's and omegaconf's parser; PyPI has a source archive
    "bitsandbytes",  # int8 and nf4 (43 MB: most of what travels)
    "codecarbon",
    "arrow",
    "pydantic",
    "pydantic-core",
    "annotated-types",
    "typing-inspection",
    "rapidfuzz",
    "pycountry",
    "gguf",
    "submitit",
    "hydra-submitit-launcher",
)
# codecarbon's requirements that only its command-line tool imports (login, prompts): left
# behind to stay under the carry limit; the tracker never imports them.
LEFT_BEHIND = ("authlib", "joserfc", "cryptography", "questionary", "prompt-toolkit")
SOURCE_ONLY = {"antlr4-python3-runtime"}
PLATFORMS = (
    "manylinux_2_28_x86_64",
    "manylinux_2_27_x86_64",
    "manylinux_2_24_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
    "manylinux1_x86_64",
)


def pins(lock_text: str) -> list[str]:
    """``name==version`` of every carried package, from the lock; a missing one is an error."""
    locked = lockfile.parse(lock_text)
    missing = [n for n in CARRY if lockfile.normalize(n) not in locked]
    if missing:
        raise SystemExit(f"gpu_wheels: not in requirements.lock: {', '.join(missing)}")
    return [f"{n}=={locked[lockfile.normalize(n)]}" for n in CARRY]


def wheel_name(pin: str) -> str:
    """The prefix of this pin's wheel file, lower case: ``hydra_core-1.3.8-``."""
    name, version = pin.split("==")
    return f"{name.replace('-', '_')}-{version}-".lower()


def download(pinned: list[str], dest: Path, python: str) -> None:
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    binary = [p for p in pinned if p.split("==")[0] not in SOURCE_ONLY]
    source = [p for p in pinned if p.split("==")[0] in SOURCE_ONLY]
    platforms = [arg for p in PLATFORMS for arg in ("--platform", p)]
    subprocess.run(
        [*pip, "download", "-q", "--no-deps", "--only-binary=:all:", "-d", str(dest)]
        + ["--python-version", python, "--implementation", "cp", *platforms, *binary],
        check=True,
    )
    if source:
        subprocess.run([*pip, "wheel", "-q", "--no-deps", "-w", str(dest), *source], check=True)


def prune(dest: Path, pinned: list[str]) -> list[str]:
    """Remove wheels that are not one of the pins; their names."""
    keep = tuple(wheel_name(p) for p in pinned)
    stale = [w for w in dest.glob("*.whl") if not w.name.lower().startswith(keep)]
    for w in stale:
        w.unlink()
    return sorted(w.name for w in stale)


def tracked_bytes() -> int:
    """What git would send of the repository itself (tracked files)."""
    files = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True
    ).stdout.split(b"\0")
    return sum(
        (REPO / f.decode()).stat().st_size for f in files if f and (REPO / f.decode()).is_file()
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.gpu_wheels", description=__doc__.split("\n")[0]
    )
    p.add_argument("--python", default="3.12", help="the GPU machine's Python (default 3.12)")
    p.add_argument("--dest", type=Path, default=REPO / ".whl", help="wheel folder (default .whl)")
    args = p.parse_args(argv)
    pinned = pins((REPO / "requirements.lock").read_text())
    args.dest.mkdir(parents=True, exist_ok=True)
    download(pinned, args.dest, args.python)
    for name in prune(args.dest, pinned):
        print(f"removed {name} (not a pin of this lock)")
    wheels = sorted(args.dest.glob("*.whl"))
    missing = [
        p for p in pinned if not any(w.name.lower().startswith(wheel_name(p)) for w in wheels)
    ]
    if missing:
        print(f"gpu_wheels: no wheel for {', '.join(missing)}")
        return 1
    size, repo = sum(w.stat().st_size for w in wheels), tracked_bytes()
    print(
        f"{len(wheels)} wheels in {args.dest}: {size / 2**20:.1f} MiB; with the repository "
        f"({repo / 2**20:.1f} MiB) {(size + repo) / 2**20:.1f} MiB of the "
        f"{CARRY_LIMIT_BYTES / 2**20:.0f} MiB that may travel"
    )
    return 0 if size + repo <= CARRY_LIMIT_BYTES else 1


if __name__ == "__main__":
    sys.exit(main())
