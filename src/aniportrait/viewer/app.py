"""The viewer's page (Gradio): controls on the left, the frame on the right.

While a slider moves, each ``input`` event renders a preview (only the newest pending one runs); when it is let go,
``release`` renders the full frame. Seed, psi and the coefficient index render full frames. Play runs a built-in
trajectory until it ends or Stop is pressed. The status line under the image says what the image is
(``full frame, 128x128, seed 0, psi 0.70, 95 ms``).

The page asks nothing of the internet: no analytics, no share link, system fonts instead of web fonts.
"""

from __future__ import annotations

import math
import os
import time

from aniportrait.checkpoint import expression_meaning
from aniportrait.render import keyframes as kf
from aniportrait.viewer.controls import ANGLE_SLIDERS, EXPRESSION_LIMIT, EXPRESSION_STEP, ViewControls
from aniportrait.viewer.session import ViewerSession

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio is imported

TITLE = "aniportrait viewer"
SYSTEM_FONTS = ("ui-sans-serif", "system-ui", "sans-serif")
MONO_FONTS = ("ui-monospace", "monospace")
STALE_PREVIEW_SECONDS = 0.5  # previews this soon after a full frame are late ones from the drag that just ended
DISPLAY_SIDE = 384  # pixels of the page's image (the browser scales the frame to it)
# The frame fills its box, scaled without smoothing (a preview's pixels stay visible as pixels).
CSS = "#frame img { width: 100%; height: 100%; object-fit: contain; image-rendering: pixelated; }"


def build_app(session: ViewerSession):
    """The Gradio Blocks of the viewer for ``session`` (launch it with :func:`launch`)."""
    import gradio as gr

    names = expression_meaning(session.portrait.metadata)

    def controls_from(values) -> ViewControls:
        angles = dict(zip(ANGLE_SLIDERS, values[: len(ANGLE_SLIDERS)]))
        rest = values[len(ANGLE_SLIDERS) :]
        named, (coefficient, value) = tuple(rest[: len(names)]), rest[len(names) :]
        return ViewControls(**angles, named=named, coefficient=int(coefficient or 0), value=value)

    # The newest full frame. A preview's request can reach the queue after the release that ends its drag (the page
    # sends the newest pending preview once the previous one is done): a preview of the full frame's settings, or
    # one that arrives within STALE_PREVIEW_SECONDS of it, is stale and is skipped, so it cannot replace the frame.
    shown_in_full = {"settings": None, "at": -math.inf}

    def render(preview: bool):
        def handler(seed, psi, *values):
            settings = (seed, psi, *values)
            stale = time.monotonic() - shown_in_full["at"] < STALE_PREVIEW_SECONDS
            if preview and (stale or settings == shown_in_full["settings"]):
                return gr.skip(), gr.skip()
            try:
                seed = int(seed)
                frame = session.frame(seed, psi, controls_from(values), preview=preview)
            except (ValueError, TypeError) as err:
                raise gr.Error(str(err)) from None
            if not preview:
                shown_in_full.update(settings=settings, at=time.monotonic())
            return frame.image, frame.status(seed, psi)

        return handler

    def play(seed, psi, trajectory):
        try:
            seed = int(seed)
            for i, count, frame in session.trajectory(seed, psi, trajectory):
                yield frame.image, f"{trajectory} {i + 1}/{count}: " + frame.status(seed, psi)
        except (ValueError, TypeError) as err:
            raise gr.Error(str(err)) from None

    psi_default = session.portrait.rendering.psi  # the checkpoint's
    first = session.frame(0, psi_default, ViewControls(named=(0.0,) * len(names)))
    with gr.Blocks(title=TITLE, analytics_enabled=False) as app:
        gr.Markdown(f"### {TITLE}")
        with gr.Row():
            with gr.Column(scale=1):
                with gr.Row():
                    seed = gr.Number(0, label="seed", precision=0, minimum=0, maximum=kf.MAX_SEED, elem_id="seed")
                    psi = gr.Slider(0.0, 1.0, psi_default, step=0.05, label="psi (truncation)", elem_id="psi")
                sliders = [
                    gr.Slider(low, high, 0.0, step=step, label=label, elem_id=name)
                    for name, (low, high, step, label) in ANGLE_SLIDERS.items()
                ]
                limit = EXPRESSION_LIMIT
                for i, name in enumerate(names):
                    sliders.append(
                        gr.Slider(
                            -limit, limit, 0.0, step=EXPRESSION_STEP, label=f"{name} (expr. {i})", elem_id=f"e{i}"
                        )
                    )
                with gr.Row():
                    coefficient = gr.Number(
                        0, label="expression coefficient", precision=0, minimum=0, maximum=kf.EXPRESSION_DIM - 1
                    )
                    value = gr.Slider(-limit, limit, 0.0, step=EXPRESSION_STEP, label="its value", elem_id="value")
                with gr.Row():
                    trajectory = gr.Dropdown(list(kf.TRAJECTORIES), value="demo", label="trajectory")
                    play_button = gr.Button("Play", elem_id="play")
                    stop_button = gr.Button("Stop", elem_id="stop")
            with gr.Column(scale=1):
                image = gr.Image(
                    first.image,
                    label="frame",
                    type="numpy",
                    format="png",
                    interactive=False,
                    height=DISPLAY_SIDE,
                    buttons=["download", "fullscreen"],
                    elem_id="frame",
                )
                status = gr.Textbox(first.status(0, psi_default), label="status", interactive=False, elem_id="status")

        inputs = [seed, psi, *sliders, coefficient, value]
        outputs = [image, status]
        # One concurrency group: every render runs in the order it was queued, one at a time.
        quiet = {"show_progress": "hidden", "trigger_mode": "always_last", "concurrency_id": "render"}
        for slider in [psi, *sliders, value]:
            slider.input(render(preview=True), inputs, outputs, **quiet)
            slider.release(render(preview=False), inputs, outputs, **quiet)
        seed.change(render(preview=False), inputs, outputs, **quiet)
        coefficient.change(render(preview=False), inputs, outputs, **quiet)
        playing = play_button.click(
            play, [seed, psi, trajectory], outputs, show_progress="hidden", concurrency_id="render"
        )
        stop_button.click(None, cancels=[playing])
    return app


def launch(app, host: str = "127.0.0.1", port: int = 7860, *, open_browser: bool = False) -> str:
    """Serve ``app`` on ``host:port`` from a background thread and return its URL (``app.block_thread()`` waits
    until Ctrl-C; ``app.close()`` stops it)."""
    import gradio as gr

    theme = gr.themes.Default(font=SYSTEM_FONTS, font_mono=MONO_FONTS)
    app.queue(default_concurrency_limit=1)
    app.launch(
        server_name=host,
        server_port=port,
        share=False,
        inbrowser=open_browser,
        prevent_thread_lock=True,
        quiet=True,
        theme=theme,
        css=CSS,
    )
    return app.local_url
