"""``aniportrait view``: an interactive viewer in the browser (needs the ``viewer`` extra: Gradio).

``controls`` turns slider values into a frame's camera, pose and expression, ``session`` renders (with an identity
cache), ``app`` is the page.
"""
