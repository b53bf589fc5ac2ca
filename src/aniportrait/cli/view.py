"""`aniportrait view`: the interactive viewer in the browser."""

from __future__ import annotations

import importlib.util
import socket

import click

from aniportrait.cli.common import (
    InputError,
    _check_impl,
    _input_errors,
    _resolve_device,
    device_options,
    model_options,
)


@click.command("view")
@model_options
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to serve on (0.0.0.0: every interface).")
@click.option("--port", default=7860, show_default=True, type=click.IntRange(1, 65535), help="Port to serve on.")
@click.option("--open", "open_browser", is_flag=True, help="Also open the page in the system's web browser.")
@device_options
def view_command(checkpoint, smpl, host, port, open_browser, device, impl):
    """Serve an interactive viewer: sliders for seed, psi, camera, head and shoulder pose and expression, a live
    low-resolution preview while a slider moves and the full frame when it stops, and the built-in trajectories.

    Prints the page's address and serves until Ctrl-C. Needs Gradio: pip install "aniportrait[viewer]"."""
    try:
        if importlib.util.find_spec("gradio") is None:
            raise InputError('view needs Gradio: pip install "aniportrait[viewer]"')
        _check_port_free(host, port)
        device = _resolve_device(device)
        _check_impl(impl, device)
        from aniportrait.api import load

        portrait = load(checkpoint, smpl, device, impl)
    except _input_errors() as err:
        raise InputError(str(err)) from None
    from aniportrait.viewer.app import build_app, launch
    from aniportrait.viewer.session import ViewerSession

    app = build_app(ViewerSession(portrait))
    url = launch(app, host, port, open_browser=open_browser)
    click.echo(f"aniportrait viewer at {url} (Ctrl-C stops it)")
    try:
        app.block_thread()
    finally:
        app.close()


def _check_port_free(host: str, port: int) -> None:
    """Fail early, in one line, when the address cannot be served (the port is taken, or the host is not ours)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        message = f"--host {host}: unknown address; use 127.0.0.1 (this machine) or 0.0.0.0 (every interface)"
        raise InputError(message) from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds
        try:
            probe.bind(address)
        except OSError as err:
            raise InputError(f"cannot serve on {host}:{port} ({err.strerror}); choose another --port") from None
