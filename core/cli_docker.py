"""`tx docker build`: images for `--launcher docker`, built through the docker SDK."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

docker_app = typer.Typer(
    name="docker",
    help="Container images for tx jobs (run them with --launcher docker).",
    no_args_is_help=True,
    rich_markup_mode=None,
)


@docker_app.command("build")
def build_cmd(
    cpu: bool = typer.Option(False, "--cpu", help="CPU variant (Dockerfile.cpu); default: the CUDA PyTorch image."),
    tag: Optional[str] = typer.Option(None, "--tag", "-t", help="Image name:tag [default: tx:latest, tx:cpu with --cpu]."),
    base_image: Optional[str] = typer.Option(
        None, "--base-image", help="FROM image (build arg BASE_IMAGE); default: the Dockerfile's."
    ),
    wheelhouse: Optional[Path] = typer.Option(
        None, "--wheelhouse", help="Install Python packages only from the wheels in DIR, with no network "
        "during the build (make DIR on a connected host: pip wheel -w DIR -r requirements.txt)."
    ),
    extra: Optional[List[str]] = typer.Option(
        None, "--extra", help="Also install this extra of tx-train, e.g. --extra deepspeed (repeatable)."
    ),
    build_arg: Optional[List[str]] = typer.Option(
        None, "--build-arg", help="NAME=VALUE build argument, e.g. TORCH_INDEX_URL=... (repeatable)."
    ),
    no_cache: bool = typer.Option(False, "--no-cache", help="Rebuild every layer, even when the image is up to date."),
    save_context: Optional[Path] = typer.Option(
        None, "--save-context", help="Write the build context to DIR and print the docker build command instead of building."
    ),
) -> None:
    """Build a tx image: dependencies layer first, then tx itself; non-root user; `tx` entrypoint."""
    from tx.core import __version__, dockerimage
    from tx.core.errors import ConfigError

    image_tag = tag or (dockerimage.DEFAULT_CPU_TAG if cpu else dockerimage.DEFAULT_TAG)
    args: dict[str, str] = {}
    for item in build_arg or []:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise ConfigError(f"--build-arg {item!r} is not NAME=VALUE")
        args[key] = value
    if base_image:
        args["BASE_IMAGE"] = base_image
    entries = dockerimage.context_entries(cpu, wheelhouse.expanduser().resolve() if wheelhouse else None, extra or ())

    if save_context is not None:
        target = save_context.expanduser().resolve()
        dockerimage.save_context(entries, target)
        flags = " ".join(f"--build-arg {k}={v}" for k, v in sorted(args.items()))
        net = " --network none" if wheelhouse else ""
        typer.echo(f"tx: build context written to {target}")
        typer.echo(f"docker build{net} {flags + ' ' if flags else ''}-t {image_tag} {target}")
        return

    client = dockerimage.docker_client()
    base_id = dockerimage.image_id(client, args["BASE_IMAGE"]) if "BASE_IMAGE" in args else ""
    digest = dockerimage.context_hash(entries, args, base_id)
    if not no_cache and dockerimage.up_to_date(client, image_tag, digest):
        typer.echo(f"tx: image {image_tag} is up to date (context {digest}); --no-cache rebuilds it")
        return
    labels = {
        dockerimage.LABEL_HASH: digest,
        "tx.version": __version__,
        "tx.variant": "cpu" if cpu else "gpu",
        "tx.base-image": args.get("BASE_IMAGE", "(Dockerfile default)"),
    }
    size_mb = sum(len(e.data) if e.data is not None else e.size for e in entries) / 1e6
    typer.echo(f"tx: building {image_tag} ({'CPU' if cpu else 'GPU'} Dockerfile, context {size_mb:.0f} MB"
               f"{', offline from the wheelhouse' if wheelhouse else ''})")
    image = dockerimage.stream_build(
        client, entries, tag=image_tag, build_args=args, labels=labels, offline=wheelhouse is not None, no_cache=no_cache
    )
    typer.echo(f"tx: built {image_tag} ({image[:19]}); run jobs in it with: tx run TASK --launcher docker --image {image_tag}")


def register(app: typer.Typer) -> None:
    app.add_typer(docker_app, name="docker")
